using System.Globalization;
using Loom.Api.Errors;
using Loom.Data.Keys;
using Microsoft.AspNetCore.Http;

namespace Loom.Api.Limits;

/// <summary>Endpoint filter on the /v1 group: one request from the tenant's per-minute budget, else 429 with Retry-After.</summary>
internal sealed class RateLimitFilter(TenantRateLimiter limiter) : IEndpointFilter
{
    public async ValueTask<object?> InvokeAsync(EndpointFilterInvocationContext context, EndpointFilterDelegate next)
    {
        if (context.HttpContext.Features.Get<AuthenticatedKey>() is { } key)
        {
            var decision = await limiter.TryRequestAsync(key, context.HttpContext.RequestAborted);
            if (!decision.Allowed) return TooMany(context.HttpContext, decision);
        }
        return await next(context);
    }

    public static IResult TooMany(HttpContext http, LimitDecision decision)
    {
        var seconds = (int)Math.Ceiling(decision.RetryAfter.TotalSeconds);
        http.Response.Headers.RetryAfter = seconds.ToString(CultureInfo.InvariantCulture);
        if (decision.Kind == TenantRateLimiter.Unavailable.Kind)
            return ApiErrors.Error(StatusCodes.Status503ServiceUnavailable,
                $"The rate limiter is unavailable. Please try again in {seconds}s.", "server_error", code: "rate_limiter_unavailable");
        var what = decision.Kind == "tokens" ? "tokens per minute" : "requests per minute";
        return ApiErrors.Error(StatusCodes.Status429TooManyRequests,
            $"Rate limit reached for {what}. Please try again in {seconds}s.", decision.Kind, code: "rate_limit_exceeded");
    }
}
