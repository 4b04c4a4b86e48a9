using System.Text.Json;
using Microsoft.AspNetCore.Http;

namespace Loom.Api.Completions;

internal static class RequestBody
{
    /// <summary>Parses the body as one JSON document; malformed JSON and wrong content types become 400s.</summary>
    public static async Task<JsonDocument> ReadJsonAsync(HttpRequest request, CancellationToken ct)
    {
        if (request.ContentType is null || !request.ContentType.StartsWith("application/json", StringComparison.OrdinalIgnoreCase))
            throw new InvalidRequestException("The request body must be JSON (Content-Type: application/json).", null);
        try
        {
            return await JsonDocument.ParseAsync(request.Body, new JsonDocumentOptions { MaxDepth = 64 }, ct);
        }
        catch (JsonException e)
        {
            throw new InvalidRequestException($"The request body is not valid JSON: {e.Message.Split(" Path:")[0].Split(" LineNumber:")[0]}", null);
        }
    }
}
