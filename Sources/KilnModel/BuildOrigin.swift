import Foundation

/// Where an image was built from: the commit of its templates and the CI job that ran the
/// build. Recorded on every image (docs/json.md), never part of its build key: a new commit
/// that changes no input rebuilds nothing.
public struct BuildOrigin: Codable, Sendable, Equatable {
    /// The full commit id of the template directory's checkout.
    public var commit: String?
    /// The branch (or tag) being built; nil on a detached checkout outside CI.
    public var branch: String?
    /// Tracked files under the template directory had changes not in `commit`.
    public var dirty: Bool?
    /// `gitlab`, `github`, `jenkins` or `ci` (another system that sets CI=true); nil outside CI.
    public var ci: String?
    public var project: String?
    public var pipeline: String?
    public var job: String?
    public var jobName: String?
    public var jobURL: String?
    /// The machine and user that ran kiln.
    public var host: String
    public var user: String

    enum CodingKeys: String, CodingKey {
        case commit, branch, dirty, ci, project, pipeline, job
        case jobName = "job_name"
        case jobURL = "job_url"
        case host, user
    }

    public init(host: String, user: String) {
        self.host = host
        self.user = user
    }

    /// What the standard CI variables say (GitLab CI, GitHub Actions, Jenkins, any CI=true).
    /// A CI checkout is often detached and shallow: its variables name the branch, git does not.
    public static func fromEnvironment(_ env: [String: String], host: String) -> BuildOrigin {
        var origin = BuildOrigin(
            host: host, user: env["GITLAB_USER_LOGIN"] ?? env["GITHUB_ACTOR"] ?? Self.actor(environment: env))
        func value(_ names: [String]) -> String? { names.lazy.compactMap { env[$0].flatMap { $0.isEmpty ? nil : $0 } }.first }
        guard let system = CISystem.all.first(where: { value([$0.marker]) != nil }) else {
            if let ci = env["CI"], !ci.isEmpty, ci != "false", ci != "0" { origin.ci = "ci" }
            return origin
        }
        origin.ci = system.name
        origin.commit = value(system.commit)
        origin.branch = value(system.branch)
        origin.project = value(system.project)
        origin.pipeline = value(system.pipeline)
        origin.job = value(system.job)
        origin.jobName = value(system.jobName)
        origin.jobURL = value(system.jobURL)
        if system.name == "github" {
            // A rerun keeps its run id: the attempt tells the jobs apart; the run's page is built.
            if let attempt = value(["GITHUB_RUN_ATTEMPT"]), let run = origin.job { origin.job = "\(run)/\(attempt)" }
            if let server = value(["GITHUB_SERVER_URL"]), let repository = origin.project, let run = origin.pipeline {
                origin.jobURL = "\(server)/\(repository)/actions/runs/\(run)"
            }
        }
        return origin
    }

    /// `KILN_ACTOR`, else the user name: who a build or a lifecycle event is attributed to.
    public static func actor(environment: [String: String] = ProcessInfo.processInfo.environment) -> String {
        environment["KILN_ACTOR"] ?? environment["USER"] ?? environment["LOGNAME"] ?? "unknown"
    }

    /// Which variables a CI system sets for each field, in order of preference.
    struct CISystem {
        let name, marker: String
        let commit, branch, project, pipeline, job, jobName, jobURL: [String]

        static let all = [
            CISystem(
                name: "gitlab", marker: "GITLAB_CI", commit: ["CI_COMMIT_SHA"],
                branch: ["CI_COMMIT_BRANCH", "CI_COMMIT_TAG", "CI_COMMIT_REF_NAME"], project: ["CI_PROJECT_PATH"],
                pipeline: ["CI_PIPELINE_ID"], job: ["CI_JOB_ID"], jobName: ["CI_JOB_NAME"], jobURL: ["CI_JOB_URL"]),
            CISystem(
                name: "github", marker: "GITHUB_ACTIONS", commit: ["GITHUB_SHA"], branch: ["GITHUB_HEAD_REF", "GITHUB_REF_NAME"],
                project: ["GITHUB_REPOSITORY"], pipeline: ["GITHUB_RUN_ID"], job: ["GITHUB_RUN_ID"], jobName: ["GITHUB_JOB"], jobURL: []),
            CISystem(
                name: "jenkins", marker: "JENKINS_URL", commit: ["GIT_COMMIT"], branch: ["BRANCH_NAME", "GIT_BRANCH"],
                project: ["JOB_NAME"], pipeline: [], job: ["BUILD_ID"], jobName: ["JOB_NAME"], jobURL: ["BUILD_URL"]),
        ]
    }

    /// One line for the build log and `inspect`.
    public var summary: String {
        var parts: [String] = []
        if let commit { parts.append("commit \(commit.prefix(12))\(dirty == true ? " (with uncommitted changes)" : "")") }
        if let branch { parts.append("branch \(branch)") }
        if let ci {
            var job = "\(ci) job \(job ?? "?")"
            if let jobName { job += " (\(jobName))" }
            parts.append(job)
        }
        parts.append("by \(user)@\(host)")
        return parts.joined(separator: ", ")
    }

    public var json: String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return String(decoding: (try? encoder.encode(self)) ?? Data("{}".utf8), as: UTF8.self)
    }

    public init?(json: String) {
        guard let decoded = try? JSONDecoder().decode(BuildOrigin.self, from: Data(json.utf8)) else { return nil }
        self = decoded
    }
}
