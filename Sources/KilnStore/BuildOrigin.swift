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
            host: host, user: env["GITLAB_USER_LOGIN"] ?? env["GITHUB_ACTOR"] ?? Transition.defaultActor(environment: env))
        func value(_ name: String) -> String? { env[name].flatMap { $0.isEmpty ? nil : $0 } }
        if value("GITLAB_CI") != nil {
            origin.ci = "gitlab"
            origin.commit = value("CI_COMMIT_SHA")
            origin.branch = value("CI_COMMIT_BRANCH") ?? value("CI_COMMIT_TAG") ?? value("CI_COMMIT_REF_NAME")
            origin.project = value("CI_PROJECT_PATH")
            origin.pipeline = value("CI_PIPELINE_ID")
            origin.job = value("CI_JOB_ID")
            origin.jobName = value("CI_JOB_NAME")
            origin.jobURL = value("CI_JOB_URL")
        } else if value("GITHUB_ACTIONS") != nil {
            origin.ci = "github"
            origin.commit = value("GITHUB_SHA")
            origin.branch = value("GITHUB_HEAD_REF") ?? value("GITHUB_REF_NAME")
            origin.project = value("GITHUB_REPOSITORY")
            origin.pipeline = value("GITHUB_RUN_ID")
            origin.job = value("GITHUB_RUN_ID").map { id in value("GITHUB_RUN_ATTEMPT").map { "\(id)/\($0)" } ?? id }
            origin.jobName = value("GITHUB_JOB")
            if let server = value("GITHUB_SERVER_URL"), let repository = origin.project, let run = origin.pipeline {
                origin.jobURL = "\(server)/\(repository)/actions/runs/\(run)"
            }
        } else if value("JENKINS_URL") != nil {
            origin.ci = "jenkins"
            origin.commit = value("GIT_COMMIT")
            origin.branch = value("BRANCH_NAME") ?? value("GIT_BRANCH")
            origin.project = value("JOB_NAME")
            origin.job = value("BUILD_ID")
            origin.jobName = value("JOB_NAME")
            origin.jobURL = value("BUILD_URL")
        } else if let ci = value("CI"), ci != "false", ci != "0" {
            origin.ci = "ci"
        }
        return origin
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
