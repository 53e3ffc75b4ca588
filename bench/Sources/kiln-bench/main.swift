// kiln's benchmark helper: the measurements that need kiln's own code in-process.
// bench/run.sh calls it; each subcommand prints Markdown table rows.
//
//   kiln-bench catalog            B9: resolve on 100,000 images, rotate over 10,000
//   kiln-bench snapshot DIR       B7: sealing a child that changed 10 MiB on 2 and 8 GiB parents
//   kiln-bench generate DIR N     B8: writes N templates in a 5-deep graph to DIR
//   kiln-bench refresh DIR        B10: a real-size repository, 50 templates and their images in DIR
import Foundation

func seconds(_ body: () throws -> Void) rethrows -> Double {
    let begin = ContinuousClock.now
    try body()
    let d = (ContinuousClock.now - begin).components
    return Double(d.seconds) + Double(d.attoseconds) / 1e18
}

/// (min, median, max); the median of an even count is the upper middle value.
func summary(_ values: [Double]) -> (Double, Double, Double) {
    let sorted = values.sorted()
    return (sorted.first!, sorted[sorted.count / 2], sorted.last!)
}

/// "< 2 s: met", or by how much the median missed the goal.
func verdict(_ median: Double, goal: Double, _ label: String) -> String {
    median < goal ? "\(label): met" : label + String(format: ": missed by %.0f%%", (median / goal - 1) * 100)
}

let arguments = Array(CommandLine.arguments.dropFirst())
switch arguments.first {
case "catalog":
    try catalogBenchmark()
case "snapshot" where arguments.count == 2:
    try await snapshotBenchmark(directory: arguments[1])
case "generate" where arguments.count == 3:
    try generateGraph(directory: arguments[1], count: Int(arguments[2]) ?? 1_000)
case "populate" where arguments.count == 5:
    // B14's catalog: FAMILIES families of PER images each, the first of FIRST.
    let store = try populate(
        families: Int(arguments[2]) ?? 100, perFamily: Int(arguments[3]) ?? 100, first: Int(arguments[4]), root: arguments[1])
    print(store.root)
case "refresh" where arguments.count == 2:
    try await setUpRefreshBenchmark(directory: arguments[1])
default:
    FileHandle.standardError.write(
        Data("usage: kiln-bench catalog | snapshot DIR | generate DIR COUNT | populate DIR FAMILIES PER FIRST | refresh DIR\n".utf8))
    exit(2)
}
