import Foundation
import KilnModel
import KilnStore

// The API's answers (docs/serve.md, /api/openapi.json). snake_case keys, as the rest of
// kiln's JSON (docs/json.md); dates in ISO 8601.

struct FamilyList: Codable, Sendable {
    var families: [FamilySummary]
}

struct ImagePage: Codable, Sendable {
    var family: String
    var state: String?
    var offset, limit, total: Int
    var images: [ImageView]
}

struct ImageDetail: Codable, Sendable {
    var image: ImageView
    /// Ancestors, parent first, down to the base.
    var chain: [String]
    var children: [String]
    var stale: Bool
    var staleBecause: String?
    var rebuild: RebuildReason?
    var signature: SignatureStatus
    var events: [ImageEvent]
    var tests: [TestsView]
    /// How many packages its manifest lists; nil when it has none.
    var packages: Int?

    enum CodingKeys: String, CodingKey {
        case image, chain, children, stale
        case staleBecause = "stale_because"
        case rebuild, signature, events, tests, packages
    }
}

/// The build-key inputs that differ from the family's previous image.
struct RebuildReason: Codable, Sendable {
    var previous: String
    var changed: [String]
}

struct SignatureStatus: Codable, Sendable {
    /// `verified`, `unsigned` or `problem`.
    var status: String
    var key: String?
    var problems: [String]
}

struct PackageList: Codable, Sendable {
    var image: String
    var query: String?
    var offset, limit, total: Int
    var packages: [InstalledPackage]
}

struct ChannelPointer: Codable, Sendable {
    var channel: String
    var image: String
}

struct ChannelList: Codable, Sendable {
    var family: String
    var current: [ChannelPointer]
    /// Every assignment, newest first.
    var history: [ChannelAssignment]
}

struct BuildView: Codable, Sendable {
    var id: String
    var family: String
    var image: String?
    var status: String
    var started: Date
    var finished: Date?
    var failedStep: String?
    var message: String?
    var host: String?
    var hasLog: Bool

    enum CodingKeys: String, CodingKey {
        case id, family, image, status, started, finished
        case failedStep = "failed_step"
        case message, host
        case hasLog = "has_log"
    }

    init(_ build: BuildRecord) {
        (id, family, image, status) = (build.id, build.family, build.image, build.status.rawValue)
        (started, finished, failedStep, message) = (build.started, build.finished, build.failedStep, build.message)
        host = build.host
        hasLog = build.log != nil || build.status == .running
    }
}

struct BuildPage: Codable, Sendable {
    var family: String?
    var offset, limit, total: Int
    var builds: [BuildView]
}

struct APIError: Codable, Sendable {
    struct Body: Codable, Sendable {
        var status: Int
        var message: String
    }
    var error: Body
}
