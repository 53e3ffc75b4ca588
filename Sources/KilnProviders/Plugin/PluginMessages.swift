import Foundation
import KilnCore
import KilnModel

/// The plugin protocol's messages (docs/providers.md), one Codable type each: what kiln sends
/// is checked by the compiler, and an answer that lacks a field it must have is a decoding error
/// naming the field, not a failed cast. The keys are spelled out (snake_case) because they are
/// a public protocol: a renamed Swift property must not rename a key.
enum PluginMessage {
    struct Handshake: Encodable {
        var version: Int
        var kilnVersion: String
        enum CodingKeys: String, CodingKey { case version = "protocol", kilnVersion = "kiln_version" }
    }

    struct Hello: Decodable {
        var version: Int?
        var capabilities: [String]?
        enum CodingKeys: String, CodingKey { case version = "protocol", capabilities }
    }

    struct CreateInstance: Encodable {
        struct Source: Encodable {
            var imageID: String
            enum CodingKeys: String, CodingKey { case imageID = "image_id" }
        }
        struct Parent: Encodable {
            var directory: String
            var artifact: ProviderArtifact
        }
        var buildID, family, scratchDirectory, templateDirectory: String
        var settings: JSONValue
        var source: Source?
        var parent: Parent?
        enum CodingKeys: String, CodingKey {
            case buildID = "build_id", family, scratchDirectory = "scratch_directory", templateDirectory = "template_directory"
            case settings, source, parent
        }
    }

    /// The answer to `create-instance` (the id may be missing: kiln says so), and the
    /// parameters of `shutdown` and `destroy`.
    struct Instance: Codable {
        var instanceID: String?
        enum CodingKeys: String, CodingKey { case instanceID = "instance_id" }
    }

    struct WaitReady: Encodable {
        var instanceID: String
        var timeoutSeconds: Int
        enum CodingKeys: String, CodingKey { case instanceID = "instance_id", timeoutSeconds = "timeout_seconds" }
    }

    struct Exec: Encodable {
        var instanceID, script: String
        var environment: [String: String]
        var timeoutSeconds: Int
        enum CodingKeys: String, CodingKey { case instanceID = "instance_id", script, environment, timeoutSeconds = "timeout_seconds" }
    }

    struct Executed: Decodable {
        var exitStatus: Int32?
        enum CodingKeys: String, CodingKey { case exitStatus = "exit_status" }
    }

    struct Upload: Encodable {
        var instanceID, source, destination: String
        var contentsOnly: Bool
        enum CodingKeys: String, CodingKey { case instanceID = "instance_id", source, destination, contentsOnly = "contents_only" }
    }

    struct Download: Encodable {
        var instanceID, source, destination: String
        enum CodingKeys: String, CodingKey { case instanceID = "instance_id", source, destination }
    }

    struct Snapshot: Encodable {
        var instanceID, outputDirectory, name: String
        enum CodingKeys: String, CodingKey { case instanceID = "instance_id", outputDirectory = "output_directory", name }
    }

    struct Snapshotted: Decodable {
        var imageID: String?
        var files: [String]?
        /// Strings only; a value of another type is left out, as before the messages were typed.
        var details: [String: JSONValue]?
        enum CodingKeys: String, CodingKey { case imageID = "image_id", files, details }
    }

    struct ImageChanged: Encodable {
        var artifact: ProviderArtifact
        var name, family, version, state: String
    }

    struct DeleteImage: Encodable {
        var artifact: ProviderArtifact
    }

    struct Cancel: Encodable {
        var id: Int
    }

    /// An answer whose `result` carries nothing kiln reads.
    struct Empty: Codable {}

    /// One request line: `{"id": 7, "method": "exec", "params": {...}}`.
    struct Request<Parameters: Encodable>: Encodable {
        var id: Int?
        var method: String
        var params: Parameters
    }

    /// Any line a plugin prints on stdout: an event (`log`, `output`), or an answer.
    struct Line: Decodable {
        var id: Int?
        var event, stream, text: String?
        var result, error: JSONValue?
    }

    /// An answer, decoded once its request's result type is known.
    struct Answer<Result: Decodable>: Decodable {
        struct Failure: Decodable {
            var code, message: String?
        }
        var result: Result?
        var error: Failure?
    }

    static func encode(_ value: some Encodable) throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return try encoder.encode(value)
    }
}

/// Any JSON value, kept with its type: a plugin's settings pass through kiln as the template
/// gave them (a number stays a number), and fields of an answer kiln does not read are skipped.
enum JSONValue: Codable, Sendable, Equatable {
    case null
    case bool(Bool)
    case integer(Int64)
    case number(Double)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])

    init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if container.decodeNil() {
            self = .null
        } else if let value = try? container.decode(Bool.self) {
            self = .bool(value)
        } else if let value = try? container.decode(Int64.self) {
            self = .integer(value)
        } else if let value = try? container.decode(Double.self) {
            self = .number(value)
        } else if let value = try? container.decode(String.self) {
            self = .string(value)
        } else if let value = try? container.decode([JSONValue].self) {
            self = .array(value)
        } else {
            self = .object(try container.decode([String: JSONValue].self))
        }
    }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        switch self {
        case .null: try container.encodeNil()
        case .bool(let value): try container.encode(value)
        case .integer(let value): try container.encode(value)
        case .number(let value): try container.encode(value)
        case .string(let value): try container.encode(value)
        case .array(let value): try container.encode(value)
        case .object(let value): try container.encode(value)
        }
    }

    /// Parses JSON text (a plugin's settings as the loader wrote them).
    init(json: String) throws {
        self = try JSONDecoder().decode(JSONValue.self, from: Data(json.utf8))
    }

    var string: String? {
        if case .string(let value) = self { return value }
        return nil
    }
}
