using System.Collections.Concurrent;
using Microsoft.Extensions.Logging;

namespace Loom.Api.Tests;

/// <summary>
/// Every log line every LoomFactory host writes in this test run (message and exception), kept for
/// <see cref="SecretsInLogsTests"/>, together with every secret the tests made, so the scan can look for each.
/// </summary>
public static class CapturedLogs
{
    private static readonly ConcurrentQueue<string> Lines = new();
    private static readonly ConcurrentDictionary<string, byte> Secrets = new();
    private static int _count;

    public static ILoggerProvider Provider { get; } = new SinkProvider();

    public static IReadOnlyCollection<string> All => Lines;

    public static IReadOnlyCollection<string> KnownSecrets => (IReadOnlyCollection<string>)Secrets.Keys;

    public static void AddSecret(string secret) => Secrets.TryAdd(secret, 0);

    private static void Add(string line)
    {
        // Bounded: a run writes tens of thousands of lines; past a million, keep counting nothing more.
        if (Interlocked.Increment(ref _count) <= 1_000_000) Lines.Enqueue(line);
    }

    private sealed class SinkProvider : ILoggerProvider
    {
        public ILogger CreateLogger(string categoryName) => new Sink(categoryName);
        public void Dispose() { }
    }

    private sealed class Sink(string category) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;
        public bool IsEnabled(LogLevel logLevel) => logLevel != LogLevel.None;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            var values = state is IEnumerable<KeyValuePair<string, object?>> pairs ? string.Join(" ", pairs.Select(p => $"{p.Key}={p.Value}")) : "";
            Add($"{logLevel} {category}: {formatter(state, exception)} {values} {exception}");
        }
    }
}
