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
    /// <summary>The choices run side by side as independent requests with the same prompt. With prefix caching
    /// (<see cref="InferenceOptions.PrefixCaching"/>, decision 012) and a tenant named, the first one admitted computes the
    /// prompt and the others wait for its full blocks and point their page tables at them: each then computes only the
    /// prompt's last partial block and last token (whose logits it samples from) and its own tokens. Without it each
    /// choice computes the whole prompt. Either way a choice's tokens are those of an independent request with the same
    /// sampling.</summary>
    public async IAsyncEnumerable<(int Choice, GenerationEvent Event)> GenerateChoicesAsync(GenerationRequest request, IReadOnlyList<SamplingParams> samplings,
        [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        if (samplings.Count == 0) throw new ArgumentException("at least one choice is needed", nameof(samplings));
        foreach (var s in samplings) s.Validate();
        int[] prompt = PromptTokens.Of(request, _tokenizer);
        var each = request with { Prompt = null, PromptTokenIds = prompt };

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
        }
    }
}
