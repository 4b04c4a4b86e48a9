using Loom.Inference.Engine;
using Loom.Inference.Sampling;
using Loom.Inference.Tests.Serving;
using Xunit.Abstractions;

namespace Loom.Inference.Tests.Training;

/// <summary>Training rows riding along with decode steps in the engine (Inference:TrainingRideRows): the adapter is
/// bitwise the one trained without riding and without requests, and the requests get the tokens they get alone.</summary>
public sealed class RidingTests(ITestOutputHelper log) : IDisposable
{
    private readonly TrainingHarness _h = new();
    public void Dispose() => _h.Dispose();

    [Fact]
    public async Task ChunksRideAlongDecodeStepsAndTheAdapterAndTokensAreBitwiseTheSame()
    {
        var g = TrainingGolden.Load("llama_gqa_tied_adamw");
        var plain = _h.Engine(g.Model);
        var request = _h.Plain(g, epochs: 8) with { TenantId = "trainer" };
        var alone = await TrainingHarness.Finish(plain.SubmitTraining(request));
        var solo = new List<int[]>();
        for (int i = 0; i < 24; i++) solo.Add(ServingHarness.Tokens(await ServingHarness.Run(plain, TrainingHarness.Greedy(i))));

        var engine = _h.Engine(g.Model, o => { o.TrainingRideRows = 8; return o; });
        var run = engine.SubmitTraining(request with { OutputFolder = _h.Folder() });
        int waves = 0;
        while (!run.Completion.IsCompleted && waves < 200)
        {
            int w = waves++;
            var batch = Enumerable.Range(0, 4).Select(async j =>
            {
                int i = (w * 4 + j) % 24;
                Assert.Equal(solo[i], ServingHarness.Tokens(await ServingHarness.Run(engine, TrainingHarness.Greedy(i))));
            }).ToArray();
            await Task.WhenAll(batch);
        }
        var beside = await TrainingHarness.Finish(run);
        var (rides, rows, landing) = engine.RideCounters;
        log.WriteLine($"{waves} waves of 4 requests; {rides} chunks rode along with decode steps ({rows} rows; {landing.TotalMilliseconds:F0} ms completing them)");
        Assert.True(rides > 0, "no chunk rode along with a decode step");
        Assert.Equal(alone.Steps, beside.Steps);
        Assert.Equal(TrainingHarness.AdapterBytes(alone), TrainingHarness.AdapterBytes(beside));
    }

    [Fact]
    public void RideRowsAreWholeTiles()
    {
        Assert.Contains("TrainingRideRows", new InferenceOptions { TrainingRideRows = 12 }.Problem());
        Assert.Contains("TrainingRideEvery", new InferenceOptions { TrainingRideEvery = 0 }.Problem());
        Assert.Null(new InferenceOptions { TrainingRideRows = 16, TrainingRideEvery = 2 }.Problem());
    }
}
