using System.Diagnostics;
using System.Runtime.CompilerServices;
using Loom.Cluster;
using Loom.Api.Limits;
using Loom.Api.Usage;
using Loom.Data;
using Loom.Data.Entities;
using Loom.Data.Keys;
using Loom.Inference.Engine;
using Loom.Inference.Tokenization;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Logging;

namespace Loom.Api.Completions;

/// <summary>The model a request named, as this node serves it.</summary>
/// <param name="AdapterId">The tenant's adapter row, when the request named one.</param>
/// <param name="EngineAdapterId">The id the engine knows that adapter by.</param>
/// <param name="BaseName">The base model it runs on (routing picks a node serving it).</param>
internal sealed record ResolvedModel(string Name, ITokenizer Tokenizer, int MaxContext, Guid? AdapterId, string? EngineAdapterId)
{
    public string BaseName { get; init; } = Name;
}

/// <summary>A validated request ready for the engine: prompt ids and the completion budget per choice.</summary>
internal sealed record PreparedCompletion(ResolvedModel Model, int[] PromptIds, int MaxTokens, CompletionOptions Options)
{
    /// <summary>From the X-Loom-Priority header, else the API key's default.</summary>
    public RequestPriority Priority { get; init; } = RequestPriority.Interactive;
}

/// <summary>One engine event of choice <see cref="Index"/>.</summary>
internal readonly record struct ChoiceEvent(int Index, GenerationEvent Event);

/// <summary>A request refused before generation starts, answered in the error envelope.</summary>
internal sealed class CompletionRefusedException(int status, string message, string type, string? param, string? code, TimeSpan? retryAfter = null) : Exception(message)
{
    public int Status { get; } = status;
    public string Type { get; } = type;
    public string? Param { get; } = param;
    public string? Code { get; } = code;
    public TimeSpan? RetryAfter { get; } = retryAfter;
}

/// <summary>
/// Shared by chat and text completions: resolves the model for the caller's tenant, checks the context
/// and the tenant's token budget, runs the choices on the engine and records usage.
/// </summary>
internal sealed class CompletionService(
    IInferenceClient engines, PlatformDbContext db, TenantRateLimiter limiter, TimeProvider clock, UsageRecorder usage, ILogger<CompletionService> logger)
{
    public async Task<ResolvedModel> ResolveAsync(string name, CancellationToken ct)
    {
        // Adapters are tenant-owned: the query filter limits the lookup to the caller's own.
        var adapter = await db.Adapters.AsNoTracking().Include(a => a.BaseModel).SingleOrDefaultAsync(a => a.Name == name, ct);
        var baseName = adapter?.BaseModel!.Name ?? name;

        // In this process when it serves models, else on a live inference node serving the base model.
        var served = await engines.FindModelAsync(baseName, ct);
        if (served is null)
        {
            if (adapter is not null)
                throw new CompletionRefusedException(503, $"The base model '{baseName}' of adapter '{name}' is not loaded on this node.", "server_error", "model", "model_not_loaded");
            if (await db.BaseModels.AnyAsync(m => m.Name == name, ct))
                throw new CompletionRefusedException(503, $"The model '{name}' is not loaded on this node.", "server_error", "model", "model_not_loaded");
            throw NotFound(name);
        }
        if (served.Tokenizer is null)
            throw new CompletionRefusedException(400, $"The model '{name}' has no tokenizer, so it cannot take text prompts.", "invalid_request_error", "model", null);
        if (adapter is null) return new ResolvedModel(name, served.Tokenizer, served.MaxContext, null, null);
        try
        {
            var engineId = await engines.PrepareAdapterAsync(adapter, ct);
            return new ResolvedModel(name, served.Tokenizer, served.MaxContext, adapter.Id, engineId) { BaseName = baseName };
        }
        catch (Loom.Inference.Formats.AdapterFormatException e)
        {
            logger.LogError(e, "Stored adapter {Adapter} of tenant {Tenant} no longer loads", adapter.Id, adapter.TenantId);
            throw new CompletionRefusedException(500, $"The adapter '{name}' could not be loaded.", "server_error", "model", null);
        }
    }

    /// <summary>The X-Loom-Priority header (interactive or batch) when present, else the key's default.</summary>
    public static RequestPriority PriorityOf(Microsoft.AspNetCore.Http.HttpRequest request, AuthenticatedKey key)
    {
        var header = request.Headers[Keys.PriorityNames.Header].ToString();
        if (header.Length == 0) return key.Key.Priority;
        return Loom.Api.Keys.PriorityNames.TryParse(header, out var p)
            ? p
            : throw new InvalidRequestException($"The {Loom.Api.Keys.PriorityNames.Header} header must be 'interactive' or 'batch'.", Loom.Api.Keys.PriorityNames.Header);
    }

    private static CompletionRefusedException NotFound(string name) =>
        new(404, $"The model '{name}' does not exist or you do not have access to it.", "invalid_request_error", "model", "model_not_found");

    /// <summary>Checks the context window and the tenant's tokens-per-minute budget.</summary>
    public PreparedCompletion Prepare(ResolvedModel model, int[] promptIds, CompletionOptions options, AuthenticatedKey key, RequestPriority priority, string promptParam)
    {
        var context = model.MaxContext;
        if (promptIds.Length == 0)
            throw new CompletionRefusedException(400, "The prompt is empty.", "invalid_request_error", promptParam, null);
        if (promptIds.Length >= context)
            throw new CompletionRefusedException(400,
                $"This model's maximum context length is {context} tokens. However, your prompt has {promptIds.Length} tokens.",
                "invalid_request_error", promptParam, "context_length_exceeded");
        if (options.MaxTokens is { } requested && promptIds.Length + requested > context)
            throw new CompletionRefusedException(400,
                $"This model's maximum context length is {context} tokens. However, you requested {promptIds.Length + requested} tokens ({promptIds.Length} in the prompt, {requested} for the completion). Please reduce the prompt or the completion length.",
                "invalid_request_error", "max_tokens", "context_length_exceeded");
        var maxTokens = options.MaxTokens ?? context - promptIds.Length;
        if (options.LogitBias.Keys.FirstOrDefault(id => id >= model.Tokenizer.VocabSize, -1) is >= 0 and var unknown)
            throw new CompletionRefusedException(400, $"'logit_bias' names token {unknown}, which is not in this model's vocabulary of {model.Tokenizer.VocabSize} tokens.",
                "invalid_request_error", "logit_bias", null);

        var decision = limiter.TryTokens(key, checked(promptIds.Length + maxTokens * options.N));
        if (decision == TenantRateLimiter.Unavailable)
            throw new CompletionRefusedException(503, "The rate limiter is unavailable. Please try again in 1s.", "server_error", null, "rate_limiter_unavailable", decision.RetryAfter);
        if (!decision.Allowed)
            throw new CompletionRefusedException(429, $"Rate limit reached for tokens per minute. Please try again in {Math.Ceiling(decision.RetryAfter.TotalSeconds)}s.",
                "tokens", null, "rate_limit_exceeded", decision.RetryAfter);
        return new PreparedCompletion(model, promptIds, maxTokens, options) { Priority = priority };
    }

    /// <summary>Runs the choices, streaming their events (interleaved when there are several: on an engine that shares
    /// the prompt's prefill between them, they run side by side over one prefill); records usage when done or cancelled.</summary>
    public async IAsyncEnumerable<ChoiceEvent> RunAsync(PreparedCompletion p, AuthenticatedKey key, [EnumeratorCancellation] CancellationToken ct)
    {
        var started = Stopwatch.GetTimestamp();
        var tokens = new int[p.Options.N]; // completion tokens per choice: counted as they come, the engine's count at the end
        try
        {
            var request = new GenerationRequest
            {
                PromptTokenIds = p.PromptIds, Sampling = p.Options.Sampling(p.MaxTokens, 0),
                AdapterId = p.Model.EngineAdapterId, TenantId = key.Key.TenantId.ToString("N"), Priority = (int)p.Priority,
                TenantShare = double.IsFinite(key.ShareWeight) && key.ShareWeight > 0 ? key.ShareWeight : 1,
            };
            await foreach (var (i, e) in Choices(request, p, ct))
            {
                if (e.TokenId is not null) tokens[i]++;
                if (e.Usage is { } u) tokens[i] = u.CompletionTokens;
                yield return new ChoiceEvent(i, e);
            }
        }
        finally
        {
            await RecordAsync(p, key, tokens.Sum(), Stopwatch.GetElapsedTime(started));
        }
    }

    private IAsyncEnumerable<(int Choice, GenerationEvent Event)> Choices(GenerationRequest request, PreparedCompletion p, CancellationToken ct) =>
        engines.GenerateChoicesAsync(p.Model.BaseName, request, [.. Enumerable.Range(0, p.Options.N).Select(i => p.Options.Sampling(p.MaxTokens, i))], ct);

    private Task RecordAsync(PreparedCompletion p, AuthenticatedKey key, int completionTokens, TimeSpan latency) =>
        usage.RecordAsync(new UsageRecord
        {
            RequestId = Guid.NewGuid(), TenantId = key.Key.TenantId, ApiKeyId = PortalCaller.IsPortal(key) ? null : key.Key.Id, Model = p.Model.Name, AdapterId = p.Model.AdapterId,
            PromptTokens = p.PromptIds.Length, CompletionTokens = completionTokens,
            LatencyMs = (int)Math.Min(int.MaxValue, latency.TotalMilliseconds), CreatedAt = clock.GetUtcNow(),
        });
}
