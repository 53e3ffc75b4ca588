import Foundation
import KilnCore

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif
#if canImport(FoundationXML)
    import FoundationXML
#endif

// How EC2Client talks to EC2: one signed, form-encoded POST per call, pages followed, retries
// of throttling and 5xx answers with backoff, and EC2's XML errors read and classified.
extension EC2Client {
    func paginated<Item>(
        _ action: String, _ parameters: [(String, String)], _ read: (XMLTree) -> [Item]
    ) async throws -> [Item] {
        var items: [Item] = []
        var token: String?
        repeat {
            let response = try await call(action, parameters + (token.map { [("NextToken", $0)] } ?? []))
            items += read(response)
            token = response.text("nextToken")
        } while token != nil
        return items
    }

    /// Sends one action, retrying as the policy allows, and returns the answer's document.
    ///
    /// - Throws: ``EC2Error`` for an error answer; ``KilnError/Code/io`` when no answer came
    ///   (after the retries), ``KilnError/Code/cancelled`` when the task was cancelled.
    func call(_ action: String, _ parameters: [(String, String)]) async throws -> XMLTree {
        let body = Data(
            Self.formEncode([("Action", action), ("Version", Self.apiVersion)] + parameters).utf8)
        var attempt = 1
        while true {
            let signer = SigV4Signer(credentials: try await currentCredentials(), region: configuration.region, service: "ec2")
            let answer: (Data, HTTPURLResponse)
            do {
                answer = try await exchange(body, signer: signer)
            } catch {
                if Task.isCancelled { throw KilnError(.cancelled, "EC2 \(action) was cancelled") }
                let origin = "EC2 \(action) at \(configuration.endpoint.absoluteString)"
                if let lost = error as? URLError, Self.isConnectionLoss(lost) {
                    if attempt < retry.attempts {
                        try await pause(action, "connection lost (\(lost.localizedDescription))", attempt: attempt)
                        attempt += 1
                        continue
                    }
                    throw KilnError(.io, "\(origin): \(lost.localizedDescription) (after \(attempt) attempts)", cause: lost)
                }
                throw KilnError(.io, "\(origin): \(error.localizedDescription)")
            }
            switch Self.interpret(answer.1, body: answer.0, action: action) {
            case .success(let document): return document
            case .failure(var error):
                if error.isRetryable && attempt < retry.attempts {
                    try await pause(action, "\(error.code) (HTTP \(error.httpStatus))", attempt: attempt)
                    attempt += 1
                    continue
                }
                error.attempts = attempt
                throw error
            }
        }
    }

    /// The keys to sign with; when the last link of the chain (the instance's metadata service)
    /// fails, the error also says what was looked at before it.
    private func currentCredentials() async throws -> AWSCredentials {
        do {
            return try await credentials.current()
        } catch let error as KilnError {
            guard case .instanceMetadata = configuration.credentialSource else { throw error }
            let before = configuration.lookedAt.map { " (\($0))" } ?? ""
            throw KilnError(
                error.code == .cancelled ? .cancelled : .invalidInput,
                "no AWS credentials: none in the environment or the shared files\(before), and "
                    + error.message + " (set AWS_EC2_METADATA_DISABLED=true off EC2)")
        }
    }

    private func exchange(_ body: Data, signer: SigV4Signer) async throws -> (Data, HTTPURLResponse) {
        let signed = signer.sign(
            SignableRequest(
                method: "POST", url: configuration.endpoint,
                headers: ["Content-Type": "application/x-www-form-urlencoded; charset=utf-8"], body: body),
            at: Date())
        var request = URLRequest(url: configuration.endpoint)
        request.httpMethod = "POST"
        for (name, value) in signed.headers { request.setValue(value, forHTTPHeaderField: name) }
        request.setValue("kiln/\(KilnVersion.current)", forHTTPHeaderField: "User-Agent")
        request.httpBody = body
        let (data, response) = try await Self.session.data(for: request)
        guard let http = response as? HTTPURLResponse else { throw URLError(.badServerResponse) }
        return (data, http)
    }

    private func pause(_ action: String, _ reason: String, attempt: Int) async throws {
        let delay = retry.delay(after: attempt)
        onRetry?(
            "EC2 \(action): \(reason), retrying in \(String(format: "%.1f", delay.seconds))s (attempt \(attempt + 1) of \(retry.attempts))")
        do { try await Task.sleep(for: delay) } catch { throw KilnError(.cancelled, "EC2 \(action) was cancelled") }
    }

    /// Sleeps `poll`, or throws a timeout when the deadline would pass first.
    func sleep(_ poll: Duration, until deadline: ContinuousClock.Instant, _ timeout: () -> String) async throws {
        guard ContinuousClock.now + poll <= deadline else { throw KilnError(.timeout, timeout()) }
        do { try await Task.sleep(for: poll) } catch { throw KilnError(.cancelled, "waiting on EC2 was cancelled") }
    }

    /// What an answer means: its document, or the error it carries.
    static func interpret(_ response: HTTPURLResponse, body: Data, action: String) -> Result<XMLTree, EC2Error> {
        let status = response.statusCode
        let headerRequestID =
            response.value(forHTTPHeaderField: "x-amzn-RequestId") ?? response.value(forHTTPHeaderField: "x-amz-request-id")
        let contentType = response.value(forHTTPHeaderField: "Content-Type") ?? ""
        let document = XMLTree.parse(body)
        if (200...299).contains(status) {
            if let document { return .success(document) }
            return .failure(
                EC2Error(
                    code: EC2Error.unexpectedResponseCode, message: "the answer is not XML: " + snippet(body),
                    httpStatus: status, requestID: headerRequestID, action: action))
        }
        // <Response><Errors><Error><Code/><Message/></Error></Errors><RequestID/></Response>
        if let document, let error = document.child("Errors")?.child("Error") ?? document.child("Error"),
            let code = error.text("Code")
        {
            return .failure(
                EC2Error(
                    code: code, message: error.text("Message") ?? "", httpStatus: status,
                    requestID: document.text("RequestID") ?? document.text("RequestId") ?? headerRequestID, action: action))
        }
        if status == 500, contentType.lowercased().hasPrefix("text/html"),
            String(decoding: body, as: UTF8.self).contains("<title>500 Internal Server Error</title>")
        {
            return .failure(
                EC2Error(
                    code: EC2Error.notImplementedCode,
                    message:
                        "the endpoint answered HTTP 500 with Werkzeug's HTML error page, which is how moto's server answers an action it does not implement",
                    httpStatus: status, requestID: headerRequestID, action: action))
        }
        return .failure(
            EC2Error(
                code: EC2Error.unexpectedResponseCode,
                message: "an answer without an AWS error code" + (body.isEmpty ? "" : ": " + snippet(body)),
                httpStatus: status, requestID: headerRequestID, action: action))
    }

    /// The start of a body, on one line, for an error message.
    private static func snippet(_ body: Data) -> String {
        let text = String(decoding: body.prefix(300), as: UTF8.self)
        return text.split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }.joined(separator: " ")
    }

    static func isConnectionLoss(_ error: URLError) -> Bool {
        [.networkConnectionLost, .timedOut, .cannotConnectToHost, .notConnectedToInternet].contains(error.code)
    }

    /// A state the instance will not leave for `wanted` by itself.
    static func isDeadEnd(_ state: String, wanted: String) -> Bool {
        if ["shutting-down", "terminated"].contains(state) { return !["shutting-down", "terminated"].contains(wanted) }
        return wanted == "running" && ["stopping", "stopped"].contains(state)
    }

    /// `Name.N.Key` / `Name.N.Value`, sorted by key so requests are the same for the same tags.
    static func tagParameters(_ tags: [String: String], prefix: String) -> [(String, String)] {
        tags.sorted { $0.key < $1.key }.enumerated().flatMap { index, tag in
            [("\(prefix).\(index + 1).Key", tag.key), ("\(prefix).\(index + 1).Value", tag.value)]
        }
    }

    /// `Filter.N.Name` / `Filter.N.Value.M`, sorted by name.
    static func filterParameters(_ filters: [String: [String]]) -> [(String, String)] {
        filters.sorted { $0.key < $1.key }.enumerated().flatMap { index, filter in
            [("Filter.\(index + 1).Name", filter.key)]
                + filter.value.enumerated().map { ("Filter.\(index + 1).Value.\($0.offset + 1)", $0.element) }
        }
    }

    /// `application/x-www-form-urlencoded` as botocore writes it (Python's `urlencode`): all but
    /// letters, digits and `-_.~` escaped, a space as `+`. AWS hashes whatever bytes arrive, but
    /// moto checks a signature against the body it re-encodes from the parsed form that way.
    static func formEncode(_ parameters: [(String, String)]) -> String {
        func encode(_ text: String) -> String { SigV4Signer.uriEncode(text).replacingOccurrences(of: "%20", with: "+") }
        return parameters.map { encode($0.0) + "=" + encode($0.1) }.joined(separator: "&")
    }

    /// `300s`, `0.5s`.
    static func seconds(_ duration: Duration) -> String {
        let value = duration.seconds
        return value == value.rounded() ? "\(Int(value))s" : String(format: "%.1fs", value)
    }
}
