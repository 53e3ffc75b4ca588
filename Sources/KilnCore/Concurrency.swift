import Foundation
import Synchronization

/// kiln's three concurrency helpers, in one place (as apple/containerization keeps its
/// `Timeout` and `AsyncMutex`): before them, five call sites raced work against a sleep each in
/// its own way, and cleanups ran in `await Task {}.value` wrappers written out by hand.
public enum Timeout {
    /// Runs `operation`, cancelling it once `limit` passes (its child processes are torn down by
    /// that cancellation), and then throws `onTimeout()`. The operation's own error, and the
    /// caller's cancellation, pass through unchanged.
    public static func run<T: Sendable>(
        _ limit: Duration,
        onTimeout: @escaping @Sendable () -> any Error = { KilnError(.timeout, "") },
        _ operation: @escaping @Sendable () async throws -> T
    ) async throws -> T {
        try await withThrowingTaskGroup(of: T?.self) { group in
            group.addTask { try await operation() }
            group.addTask {
                try await Task.sleep(for: limit)
                return nil
            }
            // Both children are ours: the group always yields at least one result.
            let first = try await group.next()!
            group.cancelAll()
            guard let value = first else { throw onTimeout() }
            return value
        }
    }

    /// Waits for `task` to finish, at most `limit`; true when it finished in time. The task is
    /// left running when it did not (the caller decides whether to cancel it).
    public static func wait<T: Sendable>(for task: Task<T, any Error>, atMost limit: Duration) async -> Bool {
        // Not a task group: awaiting another task's result does not end when the group is
        // cancelled, so a group would sit out the whole task. Two watchers race to resume once.
        let pending = Locked<CheckedContinuation<Bool, Never>?>(nil)
        let resume: @Sendable (Bool) -> Void = { finished in
            pending.withLock { continuation in
                continuation?.resume(returning: finished)
                continuation = nil
            }
        }
        return await withCheckedContinuation { continuation in
            pending.set(continuation)
            let timer = Task {
                // A timer cancelled because the task finished must not answer: on another
                // thread it could resume before the watcher's `true` (a QEMU that exited at
                // once was reported as not stopping).
                do { try await Task.sleep(for: limit) } catch { return }
                resume(false)
            }
            Task {
                _ = await task.result
                resume(true)
                timer.cancel()
            }
        }
    }
}

/// Runs `body` to its end even when the calling task is cancelled: a teardown (terminate the
/// instance, delete the key pair, kill the step's processes) must not be cut short by the
/// very interruption it cleans up after. The caller still waits for it.
public func uncancellable<T: Sendable>(_ body: @escaping @Sendable () async throws -> T) async throws -> T {
    // An unstructured task does not inherit the caller's cancellation; that is the point.
    try await Task { try await body() }.value
}

/// The non-throwing form of ``uncancellable(_:)``.
public func uncancellable<T: Sendable>(_ body: @escaping @Sendable () async -> T) async -> T {
    await Task { await body() }.value
}

/// Runs blocking work (synchronous reads of a disk, a child's handshake) on a thread of its
/// own, so it does not hold one of the cooperative pool's threads (two on a 2-core machine,
/// which `-j 2` builds share) while it waits.
public func blocking<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        DispatchQueue.global().async { continuation.resume(with: Result { try body() }) }
    }
}

/// A lock held across suspension points, granted in arrival order: one SSH master login at a
/// time, one writer of a shared file. `Mutex` cannot be held across an `await`.
public final class AsyncMutex: Sendable {
    private struct State {
        var held = false
        var waiters: [(id: UInt64, continuation: CheckedContinuation<Void, any Error>)] = []
        var nextID: UInt64 = 0
    }
    private let state = Mutex(State())

    public init() {}

    /// Runs `body` holding the lock. A task cancelled while it waits throws `CancellationError`
    /// and never holds the lock.
    public func withLock<T: Sendable>(_ body: @Sendable () async throws -> T) async throws -> T {
        try await acquire()
        defer { release() }
        return try await body()
    }

    private func acquire() async throws {
        let id = state.withLock { state -> UInt64 in
            state.nextID += 1
            return state.nextID
        }
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                // One decision under the lock: a waiter is either queued (and then resumed by
                // `release` or by the cancellation handler, never both) or answered here.
                let granted = state.withLock { state -> Bool? in
                    if Task.isCancelled { return false }
                    if !state.held {
                        state.held = true
                        return true
                    }
                    state.waiters.append((id, continuation))
                    return nil
                }
                switch granted {
                case true?: continuation.resume()
                case false?: continuation.resume(throwing: CancellationError())
                case nil: break
                }
            }
        } onCancel: {
            let waiter = state.withLock { state -> CheckedContinuation<Void, any Error>? in
                guard let index = state.waiters.firstIndex(where: { $0.id == id }) else { return nil }
                return state.waiters.remove(at: index).continuation
            }
            waiter?.resume(throwing: CancellationError())
        }
    }

    private func release() {
        let next = state.withLock { state -> CheckedContinuation<Void, any Error>? in
            guard !state.waiters.isEmpty else {
                state.held = false
                return nil
            }
            // Handed over directly: `held` stays true, so no newcomer overtakes the queue.
            return state.waiters.removeFirst().continuation
        }
        next?.resume()
    }
}

extension Locked where Value == Bool {
    /// True for the first caller only: a teardown that may be asked for more than once.
    public func setOnce() -> Bool {
        withLock { (done: inout Bool) -> Bool in
            defer { done = true }
            return !done
        }
    }
}

/// A value shared between tasks, behind a lock.
public final class Locked<Value: Sendable>: Sendable {
    private let mutex: Mutex<Value>

    public init(_ value: Value) { mutex = Mutex(value) }

    public var value: Value { mutex.withLock { $0 } }

    public func set(_ value: Value) { mutex.withLock { $0 = value } }

    @discardableResult
    public func withLock<R: Sendable, E: Error>(_ body: (inout Value) throws(E) -> R) throws(E) -> R {
        try mutex.withLock { (value: inout Value) throws(E) -> R in try body(&value) }
    }
}

/// `transform` over `items`, at most `limit` at once, results in the items' order. The first
/// error cancels the rest and is rethrown.
public func concurrentMap<Item: Sendable, Result: Sendable>(
    _ items: [Item], limit: Int, _ transform: @escaping @Sendable (Item) async throws -> Result
) async throws -> [Result] {
    try await withThrowingTaskGroup(of: (Int, Result).self) { group in
        var results: [Int: Result] = [:]
        var next = 0
        while next < items.count || !group.isEmpty {
            while next < items.count && next - results.count < max(limit, 1) {
                let (index, item) = (next, items[next])
                group.addTask { (index, try await transform(item)) }
                next += 1
            }
            if let (index, result) = try await group.next() { results[index] = result }
        }
        return (0..<items.count).map { results[$0]! }
    }
}

/// A pause the kill-point tests set (`KILN_TEST_DELAY_…_MS`) so that a kill lands between two
/// writes that are otherwise milliseconds apart; nothing when the variable is unset.
public func testDelay(_ variable: String) async throws {
    guard let text = ProcessInfo.processInfo.environment[variable], let ms = Int(text), ms > 0 else { return }
    try await Task.sleep(for: .milliseconds(ms))
}
