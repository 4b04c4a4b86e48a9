using System.Text.Json.Nodes;
using Loom.Api.Completions;
using Loom.Data;
using Loom.Data.Entities;
using Loom.Inference.Tokenization;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Options;

namespace Loom.Api.Responses;

/// <summary>A stored response as the chain before a new one needs it: the messages it holds and its place in the chain.</summary>
internal sealed record ResponseHistory(IReadOnlyList<ChatMessage> Messages, int Depth);

/// <summary>
/// Stored responses: rows of the caller's tenant only (the DbContext's query filter scopes every read; its write guard
/// every save), served until they expire. A chain is read by following <c>previous_response_id</c> links, at most
/// <see cref="ResponsesOptions.MaxChainLength"/> of them.
/// </summary>
internal sealed partial class ResponseStore(PlatformDbContext db, IOptions<ResponsesOptions> options, TimeProvider clock)
{
    public ResponsesOptions Limits => options.Value;

    private IQueryable<StoredResponse> Live() { var now = clock.GetUtcNow(); return db.Responses.AsNoTracking().Where(r => r.ExpiresAt > now); }

    public Task<StoredResponse?> FindAsync(string id, CancellationToken ct) => Live().SingleOrDefaultAsync(r => r.Id == id, ct);

    /// <summary>The conversation up to and including response <paramref name="id"/> (its inputs and outputs, oldest first);
    /// null when no such live response belongs to the tenant.</summary>
    public async Task<ResponseHistory?> HistoryAsync(string id, CancellationToken ct)
    {
        var head = await FindAsync(id, ct);
        if (head is null) return null;
        if (head.Depth >= Limits.MaxChainLength)
            throw new InvalidRequestException($"This conversation already holds {head.Depth} responses, the most one chain may hold ({Limits.MaxChainLength}); start a new one.", "previous_response_id");
        var chain = new List<StoredResponse> { head };
        // The links are followed one row at a time; a link that expired or was deleted ends the chain there.
        for (var at = head; at.PreviousResponseId is { } prev && chain.Count < Limits.MaxChainLength;)
        {
            var next = await FindAsync(prev, ct);
            if (next is null) break;
            chain.Add(at = next);
        }
        var messages = new List<ChatMessage>();
        foreach (var r in Enumerable.Reverse(chain))
        {
            ResponseItems.AppendMessages(messages, JsonNode.Parse(r.InputItems)!.AsArray());
            ResponseItems.AppendMessages(messages, JsonNode.Parse(r.Body)!["output"]!.AsArray());
        }
        return new ResponseHistory(messages, head.Depth);
    }

    /// <summary>Saves a finished response (and removes the tenant's expired ones).</summary>
    public async Task SaveAsync(Guid tenantId, JsonObject response, JsonArray input, int depth, CancellationToken ct)
    {
        var now = clock.GetUtcNow();
        await db.Responses.Where(r => r.ExpiresAt <= now).ExecuteDeleteAsync(ct);
        var inputJson = Jsonb(input.ToJsonString());
        var body = Jsonb(response.ToJsonString());
        db.Responses.Add(new StoredResponse
        {
            Id = (string)response["id"]!, TenantId = tenantId, Model = (string)response["model"]!, PreviousResponseId = (string?)response["previous_response_id"],
            Depth = depth, InputItems = inputJson, Body = body, SizeBytes = inputJson.Length + body.Length,
            CreatedAt = now, ExpiresAt = now.AddDays(Limits.RetentionDays),
        });
        await db.SaveChangesAsync(ct);
        db.ChangeTracker.Clear();
    }

    /// <summary>PostgreSQL's jsonb cannot hold the character U+0000 (a prompt may carry it, and a model may generate it
    /// from a byte token): stored, each one becomes U+FFFD. An escaped backslash before "u0000" is left as it is.</summary>
    internal static string Jsonb(string json) =>
        json.Contains("\\u0000", StringComparison.Ordinal) ? NulEscape().Replace(json, "$1\\uFFFD") : json;

    [System.Text.RegularExpressions.GeneratedRegex(@"(?<!\\)((?:\\\\)*)\\u0000")]
    private static partial System.Text.RegularExpressions.Regex NulEscape();

    public async Task<bool> DeleteAsync(string id, CancellationToken ct)
    {
        var now = clock.GetUtcNow();
        return await db.Responses.Where(r => r.Id == id && r.ExpiresAt > now).ExecuteDeleteAsync(ct) > 0;
    }
}
