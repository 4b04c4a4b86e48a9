using Loom.Data.Entities;
using Loom.Inference.Engine;
using Loom.Inference.Tokenization;

namespace Loom.Cluster;

/// <summary>A base model as an API node sees it: its name, tokenizer and context window.</summary>
public sealed record ServedModel(string Name, ITokenizer? Tokenizer, int MaxContext);

/// <summary>
/// The one way API code reaches an engine: in the same process when it has the inference role
/// (<see cref="InProcessInferenceClient"/>), else a streaming RPC to an inference node chosen by rendezvous hashing on
/// (base model, adapter) (<see cref="Rpc.RemoteInferenceClient"/>).
/// </summary>
public interface IInferenceClient
{
    /// <summary>The base model when an engine serving it is reachable (here, or a live node); null otherwise.</summary>
    Task<ServedModel?> FindModelAsync(string baseModel, CancellationToken cancellationToken);

    /// <summary>The base models an engine serves now (here, or on a live node).</summary>
    Task<IReadOnlySet<string>> LiveModelsAsync(CancellationToken cancellationToken);

    /// <summary>The id the engine knows a tenant's adapter by, registering it with a local engine first where there is
    /// one (a remote node registers it when a request names it).</summary>
    Task<string> PrepareAdapterAsync(Adapter adapter, CancellationToken cancellationToken);

    /// <summary>Streams a generation. Throws <see cref="ArgumentException"/> before any event for a bad request, and
    /// <see cref="InferenceUnavailableException"/> when no engine could take it or the node was lost mid-stream.
    /// Cancelling <paramref name="cancellationToken"/> stops the generation wherever it runs.</summary>
    IAsyncEnumerable<GenerationEvent> GenerateAsync(string baseModel, GenerationRequest request, CancellationToken cancellationToken);

    /// <summary>Streams <paramref name="samplings"/>.Count completions of the request's prompt (choice i sampled with
    /// <c>samplings[i]</c>), their events tagged with the choice: side by side over one prefill where the engine is
    /// local and shares it (<see cref="IChoicesEngine"/>), else one after another. Errors as <see cref="GenerateAsync"/>.</summary>
    IAsyncEnumerable<(int Choice, GenerationEvent Event)> GenerateChoicesAsync(string baseModel, GenerationRequest request, IReadOnlyList<Loom.Inference.Sampling.SamplingParams> samplings,
        CancellationToken cancellationToken);
}

/// <summary>Choices one after another, each a generation of its own.</summary>
internal static class SequentialChoices
{
    public static async IAsyncEnumerable<(int Choice, GenerationEvent Event)> RunAsync(IInferenceClient client, string baseModel, GenerationRequest request,
        IReadOnlyList<Loom.Inference.Sampling.SamplingParams> samplings, [System.Runtime.CompilerServices.EnumeratorCancellation] CancellationToken ct)
    {
        for (var i = 0; i < samplings.Count; i++)
            await foreach (var e in client.GenerateAsync(baseModel, request with { Sampling = samplings[i] }, ct))
                yield return (i, e);
    }
}

/// <summary>Registers a tenant's stored adapter with this process's engine (the API module's adapter cache does it).</summary>
public interface IAdapterRegistrar
{
    Task<string> EnsureRegisteredAsync(Adapter adapter, CancellationToken cancellationToken);
}

/// <summary>An engine could not be reached or was lost mid-stream: the request may be retried after <see cref="RetryAfter"/>.</summary>
public sealed class InferenceUnavailableException(string message, TimeSpan retryAfter, Exception? inner = null) : Exception(message, inner)
{
    public TimeSpan RetryAfter { get; } = retryAfter;
}
