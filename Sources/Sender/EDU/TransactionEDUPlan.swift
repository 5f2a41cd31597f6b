import Federation
import Outbox

/// The EDUs of one transaction to one destination, chosen under Synapse's limits, and the ids
/// of the persistent ones among them, to delete from the Outbox once the transaction has
/// been answered with 200.
///
/// Order and limits follow Synapse's `_TransactionQueueManager`: presence and receipts first,
/// then to-device EDUs, which leave `reservedDeviceListSlots` slots free so a to-device flood
/// cannot hold back device-list updates, then device-list EDUs, then other persistent EDUs,
/// then typing; never more than `TransactionBody.maximumEDUCount`. Persistent EDUs are taken
/// oldest first as a prefix of each category, so their order within a category is kept.
public struct TransactionEDUPlan: Sendable, Equatable {
    /// The canonical EDUs, in transaction order.
    public var edus: [[UInt8]]
    /// The `StoredEDU.eduID`s included, in the order they appear in `edus`.
    public var persistentEDUIDs: [Int64]

    /// Synapse's `NUMBER_OF_RESERVED_EDUS_PER_TRANSACTION`: slots to-device EDUs leave free.
    public static let reservedDeviceListSlots = 10
    public static let toDeviceEDUType = "m.direct_to_device"
    /// The EDU types that describe device lists and cross-signing keys.
    public static let deviceListEDUTypes = OutboxCommit.EDU.deviceListTypes

    public init(edus: [[UInt8]], persistentEDUIDs: [Int64]) {
        self.edus = edus
        self.persistentEDUIDs = persistentEDUIDs
    }

    /// Takes this transaction's ephemeral EDUs for `destination` out of `ephemeral` and adds
    /// the persistent ones that fit.
    ///
    /// - Parameter persistent: the destination's pending persistent EDUs, oldest first. For
    ///   the reservation to work it must hold up to `maxEDUs` of each category (to-device,
    ///   device lists, others), not just the oldest `maxEDUs` overall.
    public static func assemble(for destination: String, ephemeral: inout EphemeralEDUBuffer,
                                persistent: [StoredEDU], nowMS: Int64,
                                maxEDUs: Int = TransactionBody.maximumEDUCount) -> TransactionEDUPlan {
        var edus = ephemeral.takeLeading(for: destination, maxEDUs: maxEDUs, nowMS: nowMS)
        let chosen = selectPersistent(persistent, slots: maxEDUs - edus.count)
        edus.reserveCapacity(edus.count + chosen.count)
        for edu in chosen { edus.append(edu.canonicalJSON) }
        edus += ephemeral.takeTyping(for: destination, maxEDUs: maxEDUs - edus.count, nowMS: nowMS)
        return TransactionEDUPlan(edus: edus, persistentEDUIDs: chosen.map(\.eduID))
    }

    /// The persistent EDUs that go into `slots` free slots, in transaction order: to-device
    /// EDUs up to `slots - reservedDeviceListSlots`, then device-list EDUs, then the rest.
    public static func selectPersistent(_ persistent: [StoredEDU], slots: Int) -> [StoredEDU] {
        guard slots > 0 else { return [] }
        var toDevice: [StoredEDU] = []
        var deviceLists: [StoredEDU] = []
        var others: [StoredEDU] = []
        var remaining = slots
        let toDeviceLimit = max(0, slots - reservedDeviceListSlots)
        for edu in persistent where edu.eduType == toDeviceEDUType && toDevice.count < toDeviceLimit {
            toDevice.append(edu)
        }
        remaining -= toDevice.count
        for edu in persistent where deviceListEDUTypes.contains(edu.eduType) && deviceLists.count < remaining {
            deviceLists.append(edu)
        }
        remaining -= deviceLists.count
        for edu in persistent where others.count < remaining
            && edu.eduType != toDeviceEDUType && !deviceListEDUTypes.contains(edu.eduType) {
            others.append(edu)
        }
        return toDevice + deviceLists + others
    }
}
