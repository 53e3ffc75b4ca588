import Foundation
import KilnCore
import KilnModel
import KilnProviders
import KilnStore

/// What the image holds, read before it is sealed: the package manifest, and the secret scan
/// that fails a build that would leak keys into it.
///
/// Where kiln can read the machine's disk itself (a qemu build on an ext4 root), both are read
/// from the disk after the machine stops (``DiskInspectPhase``): faster than tools in a guest
/// under TCG, and of the bytes that are sealed. Elsewhere (a cloud machine, another
/// filesystem) the guest's own tools answer here, before it stops; `KILN_GUEST_INSPECTION=1`
/// asks for them everywhere (kiln's tests keep that path booted).
struct InspectPhase: BuildPhase {
    let store: Store

    func run(_ build: BuildContext) async throws {
        let provider = build.provider
        if build.template.steps(for: provider.name).isEmpty && !provider.buildsFromDisks {
            // Nothing was put into the image: a provider image is taken as it is (an AMI
            // built elsewhere, which kiln may not even be able to log into).
            let packages = try build.parent.flatMap { try store.catalog.packages(of: $0.name) }
            build.update { $0.packages = packages }
            build.log.emit("kiln", "no step ran: the package manifest is the parent's, and no secret scan is needed")
            return
        }
        if provider.buildsFromDisks, let base = build.current.base, ProcessInfo.processInfo.environment["KILN_GUEST_INSPECTION"] != "1",
            try await blocking({ [store] in DiskInspection.canRead(store.diskPath(digest: base)) })
        {
            build.update { $0.inspectOnDisk = true }
            return
        }
        let machine = try build.machine()
        build.steps.enter("package manifest")
        let packages = try await packageManifest(of: machine, log: build.log)
        build.update { $0.packages = packages }
        build.steps.enter("secret scan")
        try await scanForSecrets(on: machine, template: build.template, log: build.log)
    }

    /// The guest's installed packages, for `kiln refresh` and the image's bill of materials;
    /// nil for a guest without dpkg.
    private func packageManifest(of machine: any Machine, log: BuildLog) async throws -> PackageManifest? {
        let (status, output) = try await machine.capture(
            script: PackageManifest.query, title: "package manifest", log: log, timeout: .seconds(300))
        guard status == 0 else { throw KilnError(.buildFailed, "dpkg-query failed in the guest (exit status \(status))") }
        let manifest = PackageManifest(dpkgQueryOutput: output)
        guard !manifest.packages.isEmpty else {
            log.emit("kiln", "no package database in the guest: no package manifest recorded")
            return nil
        }
        log.emit("kiln", "package manifest: \(manifest.packages.count) installed packages")
        return manifest
    }

    private func scanForSecrets(on machine: any Machine, template: Template, log: BuildLog) async throws {
        log.clearLastLines()
        let started = ContinuousClock.now
        let allowed = EnvVar(name: "KILN_ALLOW_SECRETS", value: template.allowedSecrets.joined(separator: "\n"))
        let status = try await machine.run(
            script: SecretScan.script, environment: [allowed], title: "secret scan", log: log, timeout: .seconds(900))
        switch status {
        case 0:
            log.emit("kiln", "secret scan done in \((ContinuousClock.now - started).kilnDescription)")
        case SecretScan.foundStatus:
            throw SecretScan.foundError(template)
        case SecretScan.brokenStatus:
            throw KilnError(
                .buildFailed, "the secret scan could not run in this guest (its reason is in the log above), so the image is not sealed")
        default:
            throw KilnError(.buildFailed, "the secret scan could not run (exit status \(status))")
        }
    }
}

/// The package manifest and the secret scan read from the stopped machine's disk, when
/// ``InspectPhase`` found kiln can read it. Nothing to undo: it only reads.
struct DiskInspectPhase: BuildPhase {
    let store: Store

    func run(_ build: BuildContext) async throws {
        guard build.current.inspectOnDisk else { return }
        let log = build.log
        build.steps.enter("package manifest")
        let started = ContinuousClock.now
        let parent = build.current.base.map(store.diskPath(digest:))
        let disk = build.staging + "/" + Store.diskName
        let inspection = try await unsealed { try DiskInspection(disk: disk, parent: parent) }
        let packages = try await unsealed { try inspection.packageManifest() }
        build.update { $0.packages = packages }
        log.emit(
            "kiln",
            packages.map { "package manifest: \($0.packages.count) installed packages" }
                ?? "no package database on the disk: no package manifest recorded")
        build.steps.enter("secret scan")
        log.clearLastLines()
        let allowed = build.template.allowedSecrets
        let report = try await unsealed { try inspection.scanForSecrets(allowed: allowed) }
        for finding in report.allowed { log.emit("secret scan", "allowed by allow_secrets: \(finding.kind) \(finding.path)") }
        for finding in report.found { log.emit("secret scan", "found a \(finding.kind): \(finding.path)") }
        log.emit("secret scan", "scanned \(report.scanned) changed files")
        guard report.found.isEmpty else { throw SecretScan.foundError(build.template) }
        log.emit("kiln", "package manifest and secret scan read from the disk in \((ContinuousClock.now - started).kilnDescription)")
    }

    /// Whatever stops kiln reading the disk (a corrupt or hostile filesystem, a dirty journal,
    /// qemu-nbd) fails the build: a scan that cannot run never passes.
    private func unsealed<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        do {
            return try await blocking(body)
        } catch {
            throw KilnError(.buildFailed, "kiln could not read the build VM's disk, so the image is not sealed", cause: error)
        }
    }
}
