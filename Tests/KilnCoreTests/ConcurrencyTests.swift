import Foundation
import Testing

@testable import KilnCore

@Suite("Concurrency helpers")
struct ConcurrencyTests {
    struct Late: Error {}

    @Test("Timeout.run returns the value of work that finishes in time, and cancels work that does not")
    func timeoutRacesTheWork() async throws {
        #expect(try await Timeout.run(.seconds(5)) { 42 } == 42)
        let sawCancellation = Locked(false)
        let started = ContinuousClock.now
        await #expect(throws: Late.self) {
            try await Timeout.run(.milliseconds(100), onTimeout: { Late() }) {
                do { try await Task.sleep(for: .seconds(30)) } catch { sawCancellation.set(true) }
                return 0
            }
        }
        #expect(ContinuousClock.now - started < .seconds(10))
        #expect(sawCancellation.value)
    }

    @Test("Timeout.run passes the work's own error through")
    func timeoutKeepsTheWorksError() async {
        struct Own: Error {}
        await #expect(throws: Own.self) { try await Timeout.run(.seconds(5)) { () async throws -> Int in throw Own() } }
    }

    @Test("Timeout.wait tells whether a task finished within the limit, and leaves a slow one running")
    func waitForTask() async {
        let quick = Task<Int, any Error> { 1 }
        #expect(await Timeout.wait(for: quick, atMost: .seconds(5)))
        let slow = Task<Int, any Error> {
            try await Task.sleep(for: .seconds(30))
            return 2
        }
        #expect(await Timeout.wait(for: slow, atMost: .milliseconds(50)) == false)
        #expect(slow.isCancelled == false)
        slow.cancel()
    }

    @Test("uncancellable runs its body to the end in a cancelled task")
    func cleanupSurvivesCancellation() async throws {
        let finished = Locked(false)
        let task = Task {
            try? await Task.sleep(for: .seconds(30))  // cancelled at once: returns early
            await uncancellable {
                // Would throw CancellationError if the caller's cancellation reached it.
                guard (try? await Task.sleep(for: .milliseconds(50))) != nil else { return }
                finished.set(true)
            }
        }
        task.cancel()
        await task.value
        #expect(finished.value)
    }

    @Test("AsyncMutex admits one holder at a time across awaits, in arrival order")
    func mutexSerializes() async throws {
        let mutex = AsyncMutex()
        let inside = Locked(0)
        let most = Locked(0)
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<8 {
                group.addTask {
                    try await mutex.withLock {
                        let now = inside.withLock { value -> Int in
                            value += 1
                            return value
                        }
                        most.withLock { $0 = max($0, now) }
                        try await Task.sleep(for: .milliseconds(10))
                        inside.withLock { $0 -= 1 }
                    }
                }
            }
            try await group.waitForAll()
        }
        #expect(most.value == 1)
    }

    @Test("a task cancelled while it waits for AsyncMutex throws and never holds it")
    func mutexWaiterCancelled() async throws {
        let mutex = AsyncMutex()
        let release = AsyncStream<Void>.makeStream()
        let holder = Task {
            try await mutex.withLock {
                for await _ in release.stream { break }
            }
        }
        try await Task.sleep(for: .milliseconds(50))
        let waiter = Task { try await mutex.withLock { 1 } }
        try await Task.sleep(for: .milliseconds(50))
        waiter.cancel()
        await #expect(throws: CancellationError.self) { try await waiter.value }
        release.continuation.yield()
        try await holder.value
        // Free again: the cancelled waiter left no claim behind.
        #expect(try await Timeout.run(.seconds(5)) { try await mutex.withLock { 2 } } == 2)
    }
}
