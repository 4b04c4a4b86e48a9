using Loom.Inference.Engine;
using Loom.Inference.Formats;
using Loom.Inference.Sampling;
using static Loom.Inference.Tests.Serving.ServingHarness;

namespace Loom.Inference.Tests.Serving;

/// <summary>Registration and disposal racing the requests around them: an adapter being read from disk holds up
/// nobody else, the same registration twice at once ends once, and Dispose racing Dispose and new requests ends
/// cleanly.</summary>
public sealed class ServingRaceTests : IDisposable
{
    private readonly ServingHarness _h = new();

    public void Dispose() => _h.Dispose();

    private static GenerationRequest Greedy(string? adapter, params int[] prompt) =>
        new() { PromptTokenIds = prompt, AdapterId = adapter, Sampling = new SamplingParams { Temperature = 0, MaxTokens = 4, IgnoreEos = true } };

    [Fact]
    public async Task AnAdapterBeingReadHoldsUpNeitherOtherAdaptersRequestsNorASecondRegistrationOfItsOwn()
    {
        var e = _h.Engine();
        string slow = _h.Adapter(4, [LoraTarget.QProj, LoraTarget.VProj], 5), other = _h.Adapter(4, [LoraTarget.QProj, LoraTarget.VProj], 6);
        e.RegisterAdapter("other", other);
        string slowFull = Path.TrimEndingDirectorySeparator(Path.GetFullPath(slow));
        using var reading = new ManualResetEventSlim();
        using var proceed = new ManualResetEventSlim();
        e.Adapters.BeforeRead = folder =>
        {
            if (folder != slowFull) return;
            reading.Set();
            Assert.True(proceed.Wait(Limit));
        };

        var first = Task.Run(() => e.RegisterAdapter("slow", slow));
        Assert.True(reading.Wait(Limit));
        // While its folder is being read: other adapters' requests are prepared and served, the registry answers.
        Assert.False(e.IsAdapterRegistered("slow"));
        Assert.Equal(4, Tokens(await Run(e, Greedy("other", 317, 1)).WaitAsync(Limit)).Length);
        Assert.Contains("being registered", Assert.Throws<InvalidOperationException>(() => e.RegisterAdapter("slow", other)).Message);
        var second = Task.Run(() => e.RegisterAdapter("slow", slow)); // the same registration: waits for the first's outcome
        await Task.Delay(50);
        Assert.False(second.IsCompleted);

        proceed.Set();
        await Task.WhenAll(first, second).WaitAsync(Limit);
        Assert.True(e.IsAdapterRegistered("slow"));
        Assert.Equal(2, e.GetMetrics().Adapters.Registered);
        Assert.Equal(4, Tokens(await Run(e, Greedy("slow", 317, 1)).WaitAsync(Limit)).Length);
    }

    [Fact]
    public async Task AFailedRegistrationFailsItsConcurrentTwinAndLeavesNothingBehind()
    {
        var e = _h.Engine();
        var corrupt = _h.Copy(_h.Adapter(4, [LoraTarget.QProj], 7));
        var bytes = File.ReadAllBytes(corrupt.Weights);
        File.WriteAllBytes(corrupt.Weights, bytes[..(bytes.Length - 50)]);
        string full = Path.TrimEndingDirectorySeparator(Path.GetFullPath(corrupt.Path));
        using var reading = new ManualResetEventSlim();
        using var proceed = new ManualResetEventSlim();
        e.Adapters.BeforeRead = folder =>
        {
            if (folder != full) return;
            reading.Set();
            Assert.True(proceed.Wait(Limit));
        };
        var first = Task.Run(() => e.RegisterAdapter("bad", corrupt.Path));
        Assert.True(reading.Wait(Limit));
        var second = Task.Run(() => e.RegisterAdapter("bad", corrupt.Path));
        await Task.Delay(50);
        proceed.Set();
        await Assert.ThrowsAsync<AdapterFormatException>(() => first.WaitAsync(Limit));
        await Assert.ThrowsAsync<AdapterFormatException>(() => second.WaitAsync(Limit));
        Assert.False(e.IsAdapterRegistered("bad"));
        Assert.Equal(0, e.GetMetrics().Adapters.Registered);

        e.Adapters.BeforeRead = null; // the id is free again: a good folder registers under it
        e.RegisterAdapter("bad", _h.Adapter(4, [LoraTarget.QProj], 8));
        Assert.True(e.IsAdapterRegistered("bad"));
    }

    [Fact]
    public async Task DisposeRacingDisposeAndNewRequestsEndsCleanly()
    {
        for (int i = 0; i < 20; i++)
        {
            var e = _h.Engine();
            using var start = new Barrier(4);
            var requests = Enumerable.Range(0, 2).Select(_ => Task.Run(async () =>
            {
                start.SignalAndWait();
                try { await Run(e, Greedy(null, 317, 1)); }
                catch (ObjectDisposedException) { } // refused or ended by the disposal: the one error expected
            })).ToList();
            var disposals = Enumerable.Range(0, 2).Select(_ => Task.Run(() =>
            {
                start.SignalAndWait();
                e.Dispose();
            }));
            await Task.WhenAll(requests.Concat(disposals)).WaitAsync(Limit);
        }
    }
}
