import Foundation
import KilnCore

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif
#if canImport(FoundationXML)
    import FoundationXML
#endif

public struct EC2Instance: Sendable, Equatable {
    public var id: String
    /// `pending`, `running`, `stopping`, `stopped`, `shutting-down` or `terminated`.
    public var state: String
    public var publicIP: String?
    public var privateIP: String?

    public init(id: String, state: String, publicIP: String? = nil, privateIP: String? = nil) {
        self.id = id
        self.state = state
        self.publicIP = publicIP
        self.privateIP = privateIP
    }
}

public struct EC2Image: Sendable, Equatable {
    public var id: String
    public var name: String
    /// `pending`, `available`, `failed`, `disabled`, `deregistered` and the like.
    public var state: String
    /// The EBS snapshots behind the image: deregistering an image leaves them (and their cost) behind.
    public var snapshotIDs: [String]
    public var tags: [String: String]
    /// As EC2 writes it (`2030-01-01T00:00:00.000Z`); nil when no deprecation is set.
    public var deprecationTime: String?
    /// Why the image is in its state, when EC2 says (a failed image's reason, say).
    public var stateReason: String?

    public init(
        id: String, name: String, state: String, snapshotIDs: [String] = [], tags: [String: String] = [:],
        deprecationTime: String? = nil, stateReason: String? = nil
    ) {
        self.id = id
        self.name = name
        self.state = state
        self.snapshotIDs = snapshotIDs
        self.tags = tags
        self.deprecationTime = deprecationTime
        self.stateReason = stateReason
    }
}

/// An error EC2 answered (or an answer that was not EC2's), with what identifies it in AWS's logs.
public struct EC2Error: Error, Sendable, CustomStringConvertible, LocalizedError {
    /// AWS's error code (`InvalidAMIID.NotFound`, `RequestLimitExceeded`), or kiln's name for an
    /// answer that carried none: ``notImplementedCode``, ``unexpectedResponseCode``.
    public var code: String
    public var message: String
    public var httpStatus: Int
    public var requestID: String?
    public var action: String
    /// How many requests were sent, retries included.
    public var attempts: Int

    /// moto's server answers an action it does not implement with HTTP 500 and Werkzeug's HTML
    /// "Internal Server Error" page (its traceback ends in `NotImplementedError`); kiln names that answer so.
    public static let notImplementedCode = "NotImplemented"
    /// An error answer without an AWS error document (a proxy's HTML page, say).
    public static let unexpectedResponseCode = "UnexpectedResponse"

    public init(
        code: String, message: String, httpStatus: Int, requestID: String? = nil, action: String, attempts: Int = 1
    ) {
        self.code = code
        self.message = message
        self.httpStatus = httpStatus
        self.requestID = requestID
        self.action = action
        self.attempts = attempts
    }

    /// The endpoint does not implement the action (moto 5.x for EnableImageDeprecation / DisableImage, say): callers degrade with a warning.
    public var isUnsupported: Bool {
        ["InvalidAction", "UnsupportedOperation", Self.notImplementedCode].contains(code)
    }

    /// `InvalidInstanceID.NotFound`, `InvalidAMIID.NotFound`, `InvalidKeyPair.NotFound` and the like.
    public var isNotFound: Bool { code.hasSuffix(".NotFound") }

    static let throttlingCodes: Set<String> = [
        "Throttling", "ThrottlingException", "RequestLimitExceeded", "RequestThrottled", "TooManyRequestsException",
    ]

    /// Worth sending again: EC2 was busy or broken, not the request. An unsupported action stays
    /// unsupported however often it is asked for.
    var isRetryable: Bool {
        if isUnsupported { return false }
        return Self.throttlingCodes.contains(code) || httpStatus == 429 || (500...599).contains(httpStatus)
    }

    public var description: String {
        var text = "EC2 \(action): \(code)"
        if !message.isEmpty { text += ": \(message)" }
        text += " (HTTP \(httpStatus)"
        if let requestID { text += ", request id \(requestID)" }
        if attempts > 1 { text += ", after \(attempts) attempts" }
        return text + ")"
    }

    public var errorDescription: String? { description }
}

/// How often and how patiently a request is sent again after throttling, a 5xx or a lost connection.
public struct RetryPolicy: Sendable {
    /// Requests in all, the first included.
    public var attempts: Int
    /// The wait before the first retry; it doubles for each one after, up to `maxDelay`.
    public var baseDelay: Duration
    public var maxDelay: Duration

    public init(attempts: Int, baseDelay: Duration, maxDelay: Duration) {
        self.attempts = max(1, attempts)
        self.baseDelay = baseDelay
        self.maxDelay = maxDelay
    }

    /// Five attempts from half a second: a throttled account gets about 7 s in all to calm down.
    public static let standard = RetryPolicy(attempts: 5, baseDelay: .milliseconds(500), maxDelay: .seconds(20))

    /// The wait after failed attempt `attempt` (1-based). Half of it is random so that many
    /// clients throttled together do not come back together.
    func delay(after attempt: Int) -> Duration {
        let base = baseDelay.seconds * pow(2, Double(max(0, attempt - 1)))
        let capped = min(base, maxDelay.seconds)
        return .seconds(capped * Double.random(in: 0.5...1))
    }
}

extension Duration {
    var seconds: Double {
        Double(components.seconds) + Double(components.attoseconds) / 1e18
    }
}
