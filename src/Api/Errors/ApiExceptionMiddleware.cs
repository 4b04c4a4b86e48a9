using System.Text.Json;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;

namespace Loom.Api.Errors;

/// <summary>
/// Turns every failure under /v1 into OpenAI's envelope: bad bodies into 400, oversized bodies into 413,
/// unknown routes into 404, and anything unexpected into a 500 that reveals no internals.
/// </summary>
internal sealed class ApiExceptionMiddleware(RequestDelegate next, ILogger<ApiExceptionMiddleware> logger)
{
    public async Task InvokeAsync(HttpContext context)
    {
        try
        {
            await next(context);
            if (!context.Response.HasStarted && context.Response.ContentLength is null && context.Response.ContentType is null)
            {
                if (context.Response.StatusCode == StatusCodes.Status404NotFound)
                    await ApiErrors.WriteAsync(context, 404, $"Unknown request URL: {context.Request.Method} {context.Request.Path}.", "invalid_request_error", code: "unknown_url");
                else if (context.Response.StatusCode == StatusCodes.Status415UnsupportedMediaType)
                    await ApiErrors.WriteAsync(context, 400, "The request body must be JSON (Content-Type: application/json).", "invalid_request_error", code: "invalid_request");
                else if (context.Response.StatusCode == StatusCodes.Status405MethodNotAllowed)
                    await ApiErrors.WriteAsync(context, 405, $"Method {context.Request.Method} is not allowed for {context.Request.Path}.", "invalid_request_error", code: "method_not_allowed");
            }
        }
        catch (RequestBodyTooLargeException e) when (!context.Response.HasStarted)
        {
            context.Response.Clear();
            await ApiErrors.WriteAsync(context, 413, $"The request body is too large (limit {e.Limit} bytes).", "invalid_request_error", code: "request_too_large");
        }
        catch (BadHttpRequestException e) when (!context.Response.HasStarted)
        {
            if (e.StatusCode == StatusCodes.Status413PayloadTooLarge)
                await ApiErrors.WriteAsync(context, 413, "The request body is too large.", "invalid_request_error", code: "request_too_large");
            else
                await ApiErrors.WriteAsync(context, 400, Describe(e), "invalid_request_error", code: "invalid_request");
        }
        catch (Exception e) when (!context.Response.HasStarted && !context.RequestAborted.IsCancellationRequested
                                  && (e is InvalidDataException or IOException || e is System.Text.DecoderFallbackException || e.InnerException is System.Text.DecoderFallbackException))
        {
            // A malformed or truncated multipart body, or JSON text that is not valid UTF-8 (found by FuzzTests).
            context.Response.Clear();
            await ApiErrors.WriteAsync(context, 400, e is InvalidDataException or IOException ? "The multipart body is malformed or ends early." : "The request body is not valid UTF-8.",
                "invalid_request_error", code: "invalid_request");
        }
        catch (Loom.Cluster.InferenceUnavailableException e) when (!context.Response.HasStarted)
        {
            // No engine could take the request, or its node was lost before the answer began: retryable.
            context.Response.Clear();
            context.Response.Headers.RetryAfter = Math.Max(1, (int)Math.Ceiling(e.RetryAfter.TotalSeconds)).ToString(System.Globalization.CultureInfo.InvariantCulture);
            await ApiErrors.WriteAsync(context, StatusCodes.Status503ServiceUnavailable, e.Message, "server_error", code: ApiErrors.EngineUnavailableCode);
        }
        catch (OperationCanceledException) when (context.RequestAborted.IsCancellationRequested)
        {
            // The client went away; nothing to answer.
        }
        catch (Exception e) when (!context.Response.HasStarted)
        {
            logger.LogError(e, "Unhandled error on {Method} {Path}", context.Request.Method, context.Request.Path);
            context.Response.Clear();
            await ApiErrors.WriteAsync(context, 500, "The server had an error while processing your request.", "server_error");
        }
    }

    /// <summary>A message about the body, without exception internals.</summary>
    private static string Describe(BadHttpRequestException e) => e.InnerException switch
    {
        JsonException j => $"The request body is not valid JSON or has a field of the wrong type{(j.Path is { Length: > 1 } p ? $" at '{p.TrimStart('$', '.')}'" : "")}.",
        _ when e.Message.Contains("Content-Type", StringComparison.OrdinalIgnoreCase) => "The request body must be JSON (Content-Type: application/json).",
        _ when e.Message.Contains("body was not provided", StringComparison.OrdinalIgnoreCase) => "A JSON request body is required.",
        _ => "The request could not be read as valid JSON.",
    };
}
