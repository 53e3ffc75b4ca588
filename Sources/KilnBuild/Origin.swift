import Foundation
import KilnCore
import KilnStore

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
