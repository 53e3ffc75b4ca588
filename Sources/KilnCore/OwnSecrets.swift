import Foundation

/// kiln's own credentials: what kiln reads from its environment to reach a registry, a cloud
/// or a catalog. Children (steps, plugins, ansible, QEMU, ssh) do not inherit them, and their
/// values are redacted from every build log like sensitive variables: a step that prints its
/// environment must not write kiln's registry password into a log.
public enum OwnSecrets {
    /// Withheld from children and redacted. `KILN_VAR_*` are template variables: a step gets
    /// the ones it uses from its own environment (docs/templates.md), never by inheritance.
    public static let variables: Set<String> = [
        "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
        "KILN_REGISTRY_USER", "KILN_REGISTRY_PASSWORD", "CI_REGISTRY_PASSWORD", "CI_JOB_TOKEN",
        "PGPASSWORD", "KILN_CATALOG", "KILN_SIGNING_KEY", "KILN_SERVE_TOKEN",
    ]

    public static func isWithheld(_ name: String) -> Bool {
        variables.contains(name) || name.hasPrefix("KILN_VAR_")
    }

    /// The values to redact: each credential's value, and the password of a URL among them
    /// (`postgres://kiln:PASSWORD@db/kiln`). Values shorter than 4 characters are left out;
    /// redacting every `1` in a log would hide nothing.
    public static func values(in environment: [String: String] = ProcessInfo.processInfo.environment) -> [String] {
        var values: [String] = []
        for name in variables.sorted() {
            guard let value = environment[name], value.count >= 4 else { continue }
            values.append(value)
            if let url = URLComponents(string: value), let password = url.password, password.count >= 4 {
                values.append(password)
                if let decoded = url.percentEncodedPassword?.removingPercentEncoding, decoded != password { values.append(decoded) }
            }
        }
        return values
    }
}
