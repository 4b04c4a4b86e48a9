using Hangfire.Logging;
using Microsoft.Extensions.Logging;
using HangfireLevel = Hangfire.Logging.LogLevel;
using LogLevel = Microsoft.Extensions.Logging.LogLevel;

namespace Loom.Jobs;

/// <summary>
/// Hangfire's log provider is process-wide (<c>LogProvider</c>'s static), and Hangfire.NetCore sets it to the logger
/// factory of whichever host configured Hangfire last; when that host is disposed, every logger Hangfire makes after
/// throws. This provider is set once for the process and writes to the logger factory of the most recent host still
/// alive (<see cref="Attach"/>); with no host alive it drops the line. A process runs one Loom host in production, so
/// there it is simply that host's logging.
/// </summary>
internal sealed class HangfireLogBridge : ILogProvider
{
    public static HangfireLogBridge Instance { get; } = new();

    private readonly Lock _gate = new();
    private readonly List<ILoggerFactory> _factories = [];

    private HangfireLogBridge() { }

    /// <summary>Routes Hangfire's logging to <paramref name="factory"/> until the returned handle is disposed.</summary>
    public IDisposable Attach(ILoggerFactory factory)
    {
        lock (_gate) _factories.Add(factory);
        return new Detach(this, factory);
    }

    public ILog GetLogger(string name) => new BridgedLog(this, name);

    private ILoggerFactory? Current
    {
        get { lock (_gate) return _factories.Count == 0 ? null : _factories[^1]; }
    }

    private sealed class Detach(HangfireLogBridge bridge, ILoggerFactory factory) : IDisposable
    {
        public void Dispose()
        {
            lock (bridge._gate) bridge._factories.Remove(factory);
        }
    }

    private sealed class BridgedLog(HangfireLogBridge bridge, string name) : ILog
    {
        private (ILoggerFactory Factory, ILogger Logger)? _cached;

        public bool Log(HangfireLevel logLevel, Func<string>? messageFunc, Exception? exception = null)
        {
            var logger = Logger();
            if (logger is null) return false;
            var level = logLevel switch
            {
                HangfireLevel.Trace => LogLevel.Trace,
                HangfireLevel.Debug => LogLevel.Debug,
                HangfireLevel.Info => LogLevel.Information,
                HangfireLevel.Warn => LogLevel.Warning,
                HangfireLevel.Error => LogLevel.Error,
                HangfireLevel.Fatal => LogLevel.Critical,
                _ => LogLevel.None,
            };
            // Without a message Hangfire only asks whether the level is on.
            if (messageFunc is null) return logger.IsEnabled(level);
            try
            {
                logger.Log(level, 0, messageFunc(), exception, static (state, _) => state);
            }
            catch (ObjectDisposedException)
            {
                return false; // the host went away between finding its factory and writing
            }
            return true;
        }

        private ILogger? Logger()
        {
            var factory = bridge.Current;
            if (factory is null) return null;
            var cached = _cached;
            if (cached is { } c && ReferenceEquals(c.Factory, factory)) return c.Logger;
            try
            {
                var logger = factory.CreateLogger(name);
                _cached = (factory, logger);
                return logger;
            }
            catch (ObjectDisposedException)
            {
                return null;
            }
        }
    }
}
