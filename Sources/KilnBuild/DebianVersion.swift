import CArchive
import Foundation
import KilnCore
import KilnModel
import KilnStore

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

/// Debian version ordering.
///
/// Hand-written because no Swift library implements dpkg's algorithm; it follows
/// `verrevcmp` and `dpkg_version_compare` of dpkg's lib/dpkg/version.c step for step.
public enum DebianVersion {
    /// dpkg's ordering (epoch, upstream, revision; '~' sorts before everything, letters before
    /// non-letters): -1, 0 or 1.
    public static func compare(_ a: String, _ b: String) -> Int {
        var a = a
        var b = b
        return a.withUTF8 { a in b.withUTF8 { b in compare(a, b) } }
    }

    static func compare(_ a: UnsafeBufferPointer<UInt8>, _ b: UnsafeBufferPointer<UInt8>) -> Int {
        let left = Parts(a)
        let right = Parts(b)
        if left.epoch != right.epoch { return left.epoch < right.epoch ? -1 : 1 }
        let upstream = verrevcmp(a, left.upstream, b, right.upstream)
        if upstream != 0 { return upstream }
        return verrevcmp(a, left.revision, b, right.revision)
    }

    /// `[epoch:]upstream[-revision]`: the epoch ends at the first colon, the revision starts
    /// after the last hyphen, as dpkg's parseversion splits them.
    private struct Parts {
        var epoch = 0
        var upstream: Range<Int>
        var revision: Range<Int>

        init(_ bytes: UnsafeBufferPointer<UInt8>) {
            var start = 0
            var end = bytes.count
            while start < end, bytes[start] == 0x20 || bytes[start] == 0x09 { start += 1 }
            while end > start, bytes[end - 1] == 0x20 || bytes[end - 1] == 0x09 { end -= 1 }
            if let colon = bytes[start..<end].firstIndex(of: UInt8(ascii: ":")) {
                // dpkg rejects epochs beyond INT_MAX; capping keeps absurd ones from overflowing.
                for digit in bytes[start..<colon] where digit >= 0x30 && digit <= 0x39 {
                    epoch = min(epoch * 10 + Int(digit - 0x30), Int(Int32.max) + 1)
                }
                start = colon + 1
            }
            if let hyphen = bytes[start..<end].lastIndex(of: UInt8(ascii: "-")) {
                upstream = start..<hyphen
                revision = (hyphen + 1)..<end
            } else {
                upstream = start..<end
                revision = end..<end
            }
        }
    }

    private static func isDigit(_ c: UInt8) -> Bool { c >= 0x30 && c <= 0x39 }

    /// dpkg's `order`: digits 0, letters their code, '~' -1, end of string 0, anything else
    /// after all letters.
    private static func order(_ c: UInt8?) -> Int {
        guard let c else { return 0 }
        if isDigit(c) { return 0 }
        if (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A) { return Int(c) }
        if c == UInt8(ascii: "~") { return -1 }
        return Int(c) + 256
    }

    private static func verrevcmp(
        _ a: UnsafeBufferPointer<UInt8>, _ ar: Range<Int>, _ b: UnsafeBufferPointer<UInt8>, _ br: Range<Int>
    ) -> Int {
        var i = ar.lowerBound
        var j = br.lowerBound
        let aEnd = ar.upperBound
        let bEnd = br.upperBound
        while i < aEnd || j < bEnd {
            var firstDiff = 0
            while (i < aEnd && !isDigit(a[i])) || (j < bEnd && !isDigit(b[j])) {
                let ac = order(i < aEnd ? a[i] : nil)
                let bc = order(j < bEnd ? b[j] : nil)
                if ac != bc { return ac < bc ? -1 : 1 }
                i += 1
                j += 1
            }
            while i < aEnd && a[i] == UInt8(ascii: "0") { i += 1 }
            while j < bEnd && b[j] == UInt8(ascii: "0") { j += 1 }
            while i < aEnd && j < bEnd && isDigit(a[i]) && isDigit(b[j]) {
                if firstDiff == 0 { firstDiff = Int(a[i]) - Int(b[j]) }
                i += 1
                j += 1
            }
            if i < aEnd && isDigit(a[i]) { return 1 }
            if j < bEnd && isDigit(b[j]) { return -1 }
            if firstDiff != 0 { return firstDiff < 0 ? -1 : 1 }
        }
        return 0
    }
}
