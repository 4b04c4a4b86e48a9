using System.Net;
using System.Threading.RateLimiting;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Options;

namespace Loom.Api.Limits;

/// <summary>Bound from "Api:FailedAuth": failed authentications (bad API keys, failed portal sign-ins) allowed per client IP.</summary>
public sealed class FailedAuthOptions
{
    /// <summary>Failures one IP may make per window; the next attempt, right or wrong, gets 429 until the window ends.</summary>
    public int PermitLimit { get; set; } = 30;

    public TimeSpan Window { get; set; } = TimeSpan.FromMinutes(1);
}

/// <summary>
/// Counts failed authentications per client IP (after forwarded headers from a trusted proxy are applied) in a
/// fixed window, beside Identity's per-account lockout: guessing keys or passwords from one address is slowed to
/// <see cref="FailedAuthOptions.PermitLimit"/> tries a window. Checked before the key or password is.
/// </summary>
public sealed class FailedAuthLimiter(IOptions<FailedAuthOptions> options) : IDisposable
{
    private readonly PartitionedRateLimiter<string> _limiter = PartitionedRateLimiter.Create<string, string>(ip =>
        RateLimitPartition.GetFixedWindowLimiter(ip, _ => new FixedWindowRateLimiterOptions
        {
            PermitLimit = Math.Max(1, options.Value.PermitLimit), Window = options.Value.Window, QueueLimit = 0, AutoReplenishment = true,
        }));

    public static string ClientOf(HttpContext http) => (http.Connection.RemoteIpAddress ?? IPAddress.None).ToString();

    /// <summary>True when this IP has used up its failures for the window.</summary>
    public bool IsBlocked(string ip) => _limiter.GetStatistics(ip) is { CurrentAvailablePermits: <= 0 };

    public void RecordFailure(string ip)
    {
        using var _ = _limiter.AttemptAcquire(ip);
    }

    /// <summary>Seconds until a blocked IP may try again (upper bound: one window).</summary>
    public int RetryAfterSeconds => (int)Math.Ceiling(options.Value.Window.TotalSeconds);

    public void Dispose() => _limiter.Dispose();
}
