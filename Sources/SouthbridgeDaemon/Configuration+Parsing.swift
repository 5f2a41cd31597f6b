extension Configuration {
    /// Parses configuration text, collecting every problem before throwing.
    ///
    /// Unknown tables and keys, values of the wrong type, values out of range and
    /// inconsistent pairs of values are all reported; a TOML syntax error ends the parse
    /// with that one problem. `source` names the text in the error (usually its path).
    /// With `refusingPlaceholder`, the shipped file's `server.name` placeholder is a problem
    /// too: what `check-config` and `run` use, so an unconfigured service does not start.
    public static func parse(_ text: String, source: String,
                             refusingPlaceholder: Bool = false) throws(ConfigurationError) -> Configuration {
        let document: TOMLTable
        do throws(TOMLError) {
            document = try TOMLParser.parse(text)
        } catch {
            throw ConfigurationError(source: source, problems: [
                ConfigurationError.Problem(line: error.line, keyPath: "", message: error.message),
            ])
        }
        var reader = Reader(document: document)
        let configuration = reader.read()
        if refusingPlaceholder { reader.checkServerNameIsSet(configuration) }
        guard reader.problems.isEmpty else {
            throw ConfigurationError(source: source, problems: reader.problems)
        }
        return configuration
    }

    private struct Reader {
        let document: TOMLTable
        var problems: [ConfigurationError.Problem] = []
        /// The line of every key the file sets, by key path.
        var lines: [String: Int] = [:]
        /// Key paths whose value was rejected, so no cross-key check repeats the complaint.
        var rejected: Set<String> = []

        init(document: TOMLTable) {
            self.document = document
        }

        mutating func read() -> Configuration {
            let tables = checkTables()
            var configuration = Configuration.withDefaults(serverName: "")
            for key in ConfigurationKey.all {
                guard let table = tables[key.table] else {
                    rejected.insert(key.path)
                    continue
                }
                guard let value = table?[key.name] else {
                    if key.isRequired {
                        rejected.insert(key.path)
                        problems.append(ConfigurationError.Problem(line: nil, keyPath: key.path, message: "required key is missing"))
                    }
                    continue
                }
                lines[key.path] = value.line
                do throws(KeyProblems) {
                    try key.apply(value, key.path, &configuration)
                } catch {
                    rejected.insert(key.path)
                    problems += error.problems
                }
            }
            checkOrder(
                "limits.max_tls_handshakes", configuration.limits.maxTLSHandshakes,
                atMost: "limits.max_connections", configuration.limits.maxConnections)
            checkOrder(
                "sender.retry_initial_ms", Int(configuration.sender.retryInitialInterval.milliseconds),
                atMost: "sender.retry_max_ms", Int(configuration.sender.retryMaxInterval.milliseconds))
            checkReplicationSecret(configuration.replication)
            return configuration
        }

        /// The replication endpoint beyond loopback carries the Outbox's contents: only to followers with the secret.
        private mutating func checkReplicationSecret(_ replication: Configuration.ReplicationSettings) {
            guard !rejected.contains("replication.listen"), !rejected.contains("replication.secret_file"),
                  case .tcp(let host, _)? = replication.listen, !Configuration.isLoopbackHost(host),
                  replication.secretFile == nil else { return }
            problems.append(ConfigurationError.Problem(
                line: lines["replication.secret_file"] ?? lines["replication.listen"], keyPath: "replication.secret_file",
                message: "required when replication.listen is not a loopback address or a unix socket (it is \(Configuration.quoted(replication.listen!.description)))"))
        }

        /// Reports unknown tables and keys and tables that are not tables. Returns each known
        /// table: its contents, nil when the file does not have it, absent when it is broken.
        private mutating func checkTables() -> [String: TOMLTable?] {
            let keysByTable = Dictionary(grouping: ConfigurationKey.all, by: \.table)
            var tables: [String: TOMLTable?] = keysByTable.mapValues { _ in nil }
            for tableName in document.keys {
                let value = document[tableName]!
                guard let keys = keysByTable[tableName] else {
                    reportUnknown(value, tableName)
                    continue
                }
                guard case .table(let table) = value.kind else {
                    problems.append(ConfigurationError.Problem(
                        line: value.line, keyPath: tableName,
                        message: "expected a table, got \(value.typeDescription)"))
                    tables.removeValue(forKey: tableName)
                    continue
                }
                for key in table.keys where !keys.contains(where: { $0.name == key }) {
                    reportUnknown(table[key]!, "\(tableName).\(key)")
                }
                tables[tableName] = table
            }
            return tables
        }

        private mutating func reportUnknown(_ value: TOMLValue, _ path: String) {
            let what = if case .table = value.kind { "unknown table" } else { "unknown key" }
            problems.append(ConfigurationError.Problem(line: value.line, keyPath: path, message: what))
        }

        /// Reports the placeholder `server.name` of the shipped file, on its line.
        mutating func checkServerNameIsSet(_ configuration: Configuration) {
            guard !rejected.contains("server.name"), configuration.server.name == Configuration.placeholderServerName else { return }
            problems.append(ConfigurationError.Problem(
                line: lines["server.name"], keyPath: "server.name",
                message: "still the placeholder \"\(Configuration.placeholderServerName)\": set it to your homeserver's "
                    + "server name, the part after ':' in your users' IDs"))
        }

        /// Reports `larger` being smaller than `smaller`, on the line of whichever was set
        /// (the first key's line when both were), naming both keys.
        private mutating func checkOrder(_ smallerPath: String, _ smaller: Int, atMost largerPath: String, _ larger: Int) {
            guard !rejected.contains(smallerPath), !rejected.contains(largerPath), smaller > larger else { return }
            if lines[smallerPath] != nil || lines[largerPath] == nil {
                problems.append(ConfigurationError.Problem(
                    line: lines[smallerPath], keyPath: smallerPath,
                    message: "must be at most \(largerPath) (\(larger)), got \(smaller)"))
            } else {
                problems.append(ConfigurationError.Problem(
                    line: lines[largerPath], keyPath: largerPath,
                    message: "must be at least \(smallerPath) (\(smaller)), got \(larger)"))
            }
        }
    }
}
