/// kiln's release, recorded in every image's provenance and printed by `kiln --version`.
public enum KilnVersion {
    public static let current = "0.9.0"
}
