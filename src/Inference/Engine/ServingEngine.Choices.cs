using System.Runtime.CompilerServices;
using System.Threading.Channels;
using Loom.Inference.Sampling;

namespace Loom.Inference.Engine;

/// <summary>An engine that runs the n choices of one prompt over one prefill of the prompt.</summary>
public interface IChoicesEngine
{
    /// <summary>Streams <paramref name="samplings"/>.Count completions of the request's prompt (choice i sampled with
    /// <c>samplings[i]</c>; the request's own <see cref="GenerationRequest.Sampling"/> is not used), their events tagged
    /// with the choice and interleaved as they come. Throws <see cref="ArgumentException"/> before any event for a bad
    /// request, as <see cref="IInferenceEngine.GenerateAsync"/> does.</summary>
    IAsyncEnumerable<(int Choice, GenerationEvent Event)> GenerateChoicesAsync(GenerationRequest request, IReadOnlyList<SamplingParams> samplings,
        CancellationToken cancellationToken = default);
}

public sealed partial class ServingEngine : IChoicesEngine
{
    /// <summary>With the prefix cache on, a tenant named and more than one choice: the prompt but its last token is
    /// computed once (a one-token request whose KV the prefix cache keeps, pinned for the choices; none when the cache
    /// holds that KV already), then the choices run
    /// side by side, each starting from a copy of that KV and computing only the prompt's last token (whose logits it
    /// samples from) and its own tokens. Otherwise, or when the cache could not keep the KV, each choice computes the
    /// whole prompt. With prefix caching on pool pages (<see cref="InferenceOptions.PrefixCaching"/>) the choices simply
    /// run side by side: the first computes the prompt, the others wait for its full blocks and share them (decision 012).
    /// Either way the choices' tokens are those of independent requests with the same sampling.</summary>
    public async IAsyncEnumerable<(int Choice, GenerationEvent Event)> GenerateChoicesAsync(GenerationRequest request, IReadOnlyList<SamplingParams> samplings,
        [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        if (samplings.Count == 0) throw new ArgumentException("at least one choice is needed", nameof(samplings));
        foreach (var s in samplings) s.Validate();
        int[] prompt = PromptTokens.Of(request, _tokenizer);
        var each = request with { Prompt = null, PromptTokenIds = prompt };
        string? tenant = request.TenantId;
        int[]? shared = null;
        if (_prefix is not null && tenant is not null && samplings.Count > 1 && prompt.Length > 1)
        {
            shared = prompt[..^1];
            // (an earlier request of this tenant with the same prompt may have left that KV already)
            if (!_prefix.Pin(tenant, request.AdapterId, shared, samplings.Count))
            {
                var prefill = each with { PromptTokenIds = shared, Sampling = new SamplingParams { MaxTokens = 1, Temperature = 0 } };
                await foreach (var _ in GenerateAsync(prefill, cancellationToken).ConfigureAwait(false)) { }
                if (!_prefix.Pin(tenant, request.AdapterId, shared, samplings.Count)) shared = null;
            }
        }

        using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        var events = Channel.CreateUnbounded<(int, GenerationEvent)>(new UnboundedChannelOptions { SingleReader = true });
        int running = samplings.Count;
        async Task Pump(int i)
        {
            try
            {
                await foreach (var e in GenerateAsync(each with { Sampling = samplings[i] }, stop.Token).ConfigureAwait(false))
                    events.Writer.TryWrite((i, e));
                if (Interlocked.Decrement(ref running) == 0) events.Writer.TryComplete();
            }
            catch (Exception e) { events.Writer.TryComplete(e); }
        }
        // Each call enqueues its request before its first await, so the choices arrive together.
        var pumps = Enumerable.Range(0, samplings.Count).Select(Pump).ToArray();
        try
        {
            await foreach (var item in events.Reader.ReadAllAsync(cancellationToken).ConfigureAwait(false))
                yield return item;
        }
        finally
        {
            stop.Cancel(); // a reader that stopped early: the choices still running end and free their pages
            try { await Task.WhenAll(pumps).ConfigureAwait(false); }
            catch (OperationCanceledException) { }
            if (shared is not null) _prefix!.Unpin(tenant!, request.AdapterId, shared);
        }
    }
}
