using Microsoft.AspNetCore.Http;

namespace Loom.Api.Errors;

/// <summary>Results in OpenAI's error envelope with the status the official clients map to the right exception.</summary>
public static class ApiErrors
{
    /// <summary>The code of a retryable 503 (or stream error event): no engine could take the request, or its inference node was lost.</summary>
    public const string EngineUnavailableCode = "engine_unavailable";

    public static IResult Error(int status, string message, string type, string? param = null, string? code = null) =>
        Results.Json(new OpenAiErrorEnvelope(new OpenAiError(message, type, param, code)), statusCode: status);

    public static IResult BadRequest(string message, string? param = null, string? code = null) =>
        Error(StatusCodes.Status400BadRequest, message, "invalid_request_error", param, code);

    public static IResult Unauthorized(string message) =>
        Error(StatusCodes.Status401Unauthorized, message, "invalid_request_error", code: "invalid_api_key");

    public static IResult NotFound(string message, string? param = null, string? code = null) =>
        Error(StatusCodes.Status404NotFound, message, "invalid_request_error", param, code);

    public static IResult ModelNotFound(string model) =>
        NotFound($"The model '{model}' does not exist or you do not have access to it.", "model", "model_not_found");

    public static IResult PayloadTooLarge(string message) =>
        Error(StatusCodes.Status413PayloadTooLarge, message, "invalid_request_error", code: "request_too_large");

    public static IResult Internal() =>
        Error(StatusCodes.Status500InternalServerError, "The server had an error while processing your request.", "server_error");

    /// <summary>Writes an envelope directly (for middleware and authentication challenges).</summary>
    public static Task WriteAsync(HttpContext context, int status, string message, string type, string? param = null, string? code = null)
    {
        context.Response.StatusCode = status;
        return context.Response.WriteAsJsonAsync(new OpenAiErrorEnvelope(new OpenAiError(message, type, param, code)));
    }
}
