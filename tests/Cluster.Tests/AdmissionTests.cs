using System.Diagnostics.Metrics;
using System.Runtime.CompilerServices;
using Loom.Inference.Engine;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;

namespace Loom.Cluster.Tests;

/// <summary>The admission bound of an engine (Cluster:MaxGenerationsPerEngine), alone and on the in-process path: a
/// generation past it is refused at once as retryable, and a place comes back when a generation ends. The path over
/// the RPC is covered end to end by <see cref="OverloadTests"/>.</summary>
public sealed class AdmissionTests : IDisposable
{
    private readonly ServiceProvider _services = new ServiceCollection().AddMetrics().BuildServiceProvider();

    private EngineAdmission Admission(int bound) =>
        new(Options.Create(new ClusterOptions { MaxGenerationsPerEngine = bound }), new ClusterMeters(_services.GetRequiredService<IMeterFactory>()));

    [Fact]
    public void PlacesArePerModelAndComeBackWhenALeaseIsDisposed()
    {
        var admission = Admission(2);
        var first = admission.TryEnter("a");
        var second = admission.TryEnter("a");
        Assert.NotNull(first);
        Assert.NotNull(second);
        Assert.Null(admission.TryEnter("a"));
        Assert.NotNull(admission.TryEnter("b")); // another model's engine has places of its own
        first!.Dispose();
        first.Dispose(); // twice gives back one place, not two
        Assert.Equal(1, admission.Held("a"));
        Assert.NotNull(admission.TryEnter("a"));
        Assert.Null(admission.TryEnter("a"));
        Assert.Equal(2, admission.Held("a"));
    }

    [Fact]
    public async Task TheInProcessClientRefusesAGenerationPastTheBoundAsRetryable()
    {
        var engine = new HeldEngine();
        var client = new InProcessInferenceClient(new ServedEngines(engine, new InferenceOptions()), Admission(1), _services);
        var request = new GenerationRequest { PromptTokenIds = [1, 2, 3] };

        await using var running = client.GenerateAsync(HeldEngine.Name, request, CancellationToken.None).GetAsyncEnumerator();
        Assert.True(await running.MoveNextAsync());
        var refused = await Assert.ThrowsAsync<InferenceUnavailableException>(async () =>
        {
            await foreach (var _ in client.GenerateAsync(HeldEngine.Name, request, CancellationToken.None)) { }
        });
        Assert.True(refused.RetryAfter > TimeSpan.Zero);
        Assert.Contains("try again", refused.Message);
        Assert.Equal(1, engine.Started); // the refused one never reached the engine

        engine.Release();
        while (await running.MoveNextAsync()) { }
        var events = 0;
        await foreach (var e in client.GenerateAsync(HeldEngine.Name, request, CancellationToken.None))
            if (++events == 1) engine.Release();
        Assert.Equal(2, events);
        Assert.Equal(2, engine.Started);
    }

    public void Dispose() => _services.Dispose();

    /// <summary>An engine whose generations send one token, then wait for <see cref="Release"/> to finish.</summary>
    private sealed class HeldEngine : IInferenceEngine
    {
        public const string Name = "held";
        private TaskCompletionSource _gate = new(TaskCreationOptions.RunContinuationsAsynchronously);
        public int Started;

        public ModelInfo Model { get; } = new(Name, null!, 64, null);

        public void Release()
        {
            var gate = _gate;
            _gate = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            gate.SetResult();
        }

        public async IAsyncEnumerable<GenerationEvent> GenerateAsync(GenerationRequest request, [EnumeratorCancellation] CancellationToken cancellationToken = default)
        {
            Interlocked.Increment(ref Started);
            var gate = _gate.Task;
            yield return new GenerationEvent { TokenId = 1, Text = "a" };
            await gate.WaitAsync(cancellationToken);
            yield return new GenerationEvent { TokenId = 2, Text = "b", FinishReason = FinishReason.Length, Usage = new TokenUsage(3, 2) };
        }

        public void RegisterAdapter(string adapterId, string folder, bool validated = false) => throw new NotSupportedException();
        public bool IsAdapterRegistered(string adapterId) => false;
        public void UnregisterAdapter(string adapterId) => throw new NotSupportedException();
        public EngineMetrics GetMetrics() => throw new NotSupportedException();
    }
}
