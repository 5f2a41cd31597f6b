extension Configuration {
    /// The configuration as a complete TOML file: every table and key, each under a comment
    /// saying what it does. Parsing the result gives this configuration back (durations are
    /// written in whole milliseconds).
    public func renderTOML() -> String {
        var text = ""
        var table: String?
        for key in ConfigurationKey.all {
            if key.table != table {
                text += table == nil ? "" : "\n"
                text += "[\(key.table)]\n"
                table = key.table
            }
            text += "# \(key.summary)\n\(key.name) = \(key.render(self))\n"
        }
        return text
    }
}
