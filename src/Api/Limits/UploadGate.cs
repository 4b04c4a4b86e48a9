using System.Collections.Concurrent;
using Loom.Api.Errors;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Options;

namespace Loom.Api.Limits;

/// <summary>Counts each tenant's uploads in flight; one past <see cref="UploadOptions.MaxConcurrentPerTenant"/> is refused.</summary>
public sealed class UploadGate(IOptions<UploadOptions> options)
{
    private readonly ConcurrentDictionary<Guid, int> _inFlight = new();

    /// <summary>A slot for one upload of <paramref name="tenantId"/> (dispose it when the upload ends), or null when all are taken.</summary>
    public IDisposable? TryEnter(Guid tenantId)
    {
        var max = options.Value.MaxConcurrentPerTenant;
        while (true)
        {
            var current = _inFlight.GetOrAdd(tenantId, 0);
            if (current >= max) return null;
            if (_inFlight.TryUpdate(tenantId, current + 1, current)) return new Slot(this, tenantId);
        }
    }

    /// <summary>429 in OpenAI's envelope, with Retry-After.</summary>
    public IResult TooMany(HttpContext http)
    {
        http.Response.Headers.RetryAfter = "1";
        return ApiErrors.Error(StatusCodes.Status429TooManyRequests,
            $"Too many uploads in progress for your tenant (at most {options.Value.MaxConcurrentPerTenant} at once). Try again when one finishes.",
            "requests", code: "too_many_concurrent_uploads");
    }

    public int InFlight(Guid tenantId) => _inFlight.TryGetValue(tenantId, out var n) ? n : 0;

    private void Leave(Guid tenantId) => _inFlight.AddOrUpdate(tenantId, 0, (_, n) => Math.Max(0, n - 1));

    private sealed class Slot(UploadGate gate, Guid tenantId) : IDisposable
    {
        private int _disposed;

        public void Dispose()
        {
            if (Interlocked.Exchange(ref _disposed, 1) == 0) gate.Leave(tenantId);
        }
    }
}
