import Foundation
import KilnCore
import KilnModel
import KilnStore
import Synchronization

extension BuildOrigin {
    /// The origin of a build of the templates at `path`: the CI variables first, then git for
    /// what they leave out (outside CI, all of it). Without git, or outside a checkout, the
    /// commit fields stay empty: a build never fails for want of them.
    public static func detect(templates path: String, environment: [String: String] = ProcessInfo.processInfo.environment) async
        -> BuildOrigin
    {
        var origin = fromEnvironment(environment, host: ProcessRegistry.hostName)
        guard ProcessRunner.find("git") != nil else { return origin }
        var isDirectory: ObjCBool = false
        let exists = FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory)
        let directory = exists && !isDirectory.boolValue ? (path as NSString).deletingLastPathComponent : path
        // Reading only: no index refresh written into the user's checkout.
        let git = { (arguments: [String]) async -> String? in
            guard
                let result = try? await ProcessRunner.run(
                    "git", ["-C", directory.isEmpty ? "." : directory] + arguments, environment: ["GIT_OPTIONAL_LOCKS": "0"],
                    timeout: .seconds(30)),
                result.succeeded
            else { return nil }
            return result.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        }
        guard let head = await git(["rev-parse", "--verify", "-q", "HEAD"]), !head.isEmpty else { return origin }
        if origin.commit == nil { origin.commit = head }
        if origin.branch == nil {
            origin.branch = await git(["symbolic-ref", "--short", "-q", "HEAD"]).flatMap { $0.isEmpty ? nil : $0 }
        }
        if origin.commit == head, let status = await git(["status", "--porcelain", "--untracked-files=no", "--", "."]) {
            origin.dirty = !status.isEmpty
        }
        return origin
    }
}

/// Where the builds of one run take their origin from: given, or found once (git and the CI
/// variables) when the run's first image is built, so an up-to-date graph runs no git.
public final class OriginSource: Sendable {
    private let find: @Sendable () async -> BuildOrigin
    private let found = Mutex<Task<BuildOrigin, Never>?>(nil)

    public init(_ origin: BuildOrigin) { find = { origin } }

    public init(templates path: String) { find = { await BuildOrigin.detect(templates: path) } }

    func value() async -> BuildOrigin {
        let task = found.withLock { found in
            if let found { return found }
            let find = self.find
            let task = Task { await find() }
            found = task
            return task
        }
        return await task.value
    }
}
