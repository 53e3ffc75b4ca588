import Foundation
import KilnCore
import KilnModel
import KilnProviders
import KilnStore

/// One stage of building an image, with its undo, as Packer's multistep runs each step's `Run`
/// and, after a failure, the `Cleanup` of every step that ran, in reverse. A new stage (a test
/// boot of the sealed image, a warm snapshot) is one more entry in ``Builder/phases``, testable
/// alone with the fake provider.
protocol BuildPhase: Sendable {
    /// Does the phase's work, recording what it made in `build` for the phases after it (and
    /// for its own undo).
    func run(_ build: BuildContext) async throws
    /// Takes back what ``run(_:)`` made once the build has failed, whether at this phase or a
    /// later one: runs even when the build was cancelled, and never throws (what it cannot
    /// remove it says in the log).
    func undo(_ build: BuildContext) async
}

extension BuildPhase {
    func undo(_ build: BuildContext) async {}
}

/// Runs phases in order; on a failure, undoes every phase that started, last first, then
/// rethrows the failure.
enum PhaseRunner {
    static func run(_ phases: [any BuildPhase], on build: BuildContext) async throws {
        var started: [any BuildPhase] = []
        do {
            for phase in phases {
                started.append(phase)
                try await phase.run(build)
            }
        } catch {
            for phase in started.reversed() { await phase.undo(build) }
            throw error
        }
    }
}

/// What one build knows, shared by its phases: the inputs, fixed at the start, and what each
/// phase made, set as it goes. A build runs its phases one after another in one task; the
/// lock only satisfies the compiler that nothing is shared unguarded.
final class BuildContext: Sendable {
    let template: Template
    let provider: any Provider
    let parent: ImageRecord?
    let decision: Decision
    /// The build's id, its scratch directory (keys, sockets, the log) and its staging
    /// directory (what becomes the blob).
    let buildID, scratch, staging: String
    let log: BuildLog
    let steps: StepTracker
    let origin: BuildOrigin?
    /// The values every log of the build redacts (the template's sensitive variables).
    let secrets: [String]

    struct Made: Sendable {
        /// The blob the machine's disk stands on: the parent's, or a base's source disk; nil
        /// for a base on a provider image.
        var base: String?
        var spec: MachineSpec?
        var machine: (any Machine)?
        var packages: PackageManifest?
        /// The package manifest and secret scan are read from the disk after the machine stops.
        var inspectOnDisk = false
        /// A provider's image (an AMI) made for this build: until the catalog names it, a
        /// failure deletes it.
        var artifact: ProviderArtifact?
        /// The sealed blob and its own size: until the catalog names it, a failure removes it.
        var sealed: (digest: String, size: Int64)?
        var image: ImageRecord?
    }
    private let made = Locked(Made())

    init(
        template: Template, provider: any Provider, parent: ImageRecord?, decision: Decision, buildID: String, scratch: String,
        staging: String, log: BuildLog, steps: StepTracker, origin: BuildOrigin?, secrets: [String] = []
    ) {
        (self.template, self.provider, self.parent, self.decision) = (template, provider, parent, decision)
        (self.buildID, self.scratch, self.staging, self.log) = (buildID, scratch, staging, log)
        (self.steps, self.origin, self.secrets) = (steps, origin, secrets)
    }

    var family: String { template.family }
    var current: Made { made.value }
    func update(_ change: (inout Made) -> Void) { made.withLock { change(&$0) } }

    /// The running machine; a phase that needs one runs after ``BootPhase``.
    func machine() throws -> any Machine {
        guard let machine = current.machine else { throw KilnError(.internalError, "no machine is running for \(family)") }
        return machine
    }
}
