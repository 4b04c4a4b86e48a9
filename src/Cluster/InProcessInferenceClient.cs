using Loom.Data.Entities;
using Loom.Inference.Engine;
using Microsoft.Extensions.DependencyInjection;

namespace Loom.Cluster;

/// <summary>The engine of this very process (roles api and inference together): no RPC, no routing.</summary>
public sealed class InProcessInferenceClient(IInferenceEngine engine, IServiceProvider services) : IInferenceClient
{
    public Task<ServedModel?> FindModelAsync(string baseModel, CancellationToken cancellationToken)
    {
        ModelInfo served;
        try { served = engine.Model; }
        catch (InvalidOperationException) { return Task.FromResult<ServedModel?>(null); } // no model configured here
        return Task.FromResult(served.Name == baseModel ? new ServedModel(served.Name, served.Tokenizer, served.MaxContext) : null);
    }

    public Task<string> PrepareAdapterAsync(Adapter adapter, CancellationToken cancellationToken) =>
        services.GetRequiredService<IAdapterRegistrar>().EnsureRegisteredAsync(adapter, cancellationToken);

    public IAsyncEnumerable<GenerationEvent> GenerateAsync(string baseModel, GenerationRequest request, CancellationToken cancellationToken) =>
        engine.GenerateAsync(request, cancellationToken);

    public IAsyncEnumerable<(int Choice, GenerationEvent Event)> GenerateChoicesAsync(string baseModel, GenerationRequest request,
        IReadOnlyList<Loom.Inference.Sampling.SamplingParams> samplings, CancellationToken cancellationToken) =>
        samplings.Count > 1 && engine is IChoicesEngine shared
            ? shared.GenerateChoicesAsync(request, samplings, cancellationToken)
            : SequentialChoices.RunAsync(this, baseModel, request, samplings, cancellationToken);
}
