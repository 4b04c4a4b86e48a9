using Loom.Inference.Sampling;

namespace Loom.Inference.Training;

/// <summary>One optimizer step: its rows (each row one example, or several packed), in order.</summary>
/// <param name="Epoch">0-based epoch.</param>
/// <param name="FirstRow">Index of its first row in the epoch's order (the data cursor).</param>
/// <param name="TrainedTokens">Tokens whose loss counts in this step (the loss is their mean).</param>
internal sealed record StepPlan(int Epoch, int FirstRow, TrainingExample[][] Rows, int TrainedTokens, int Tokens);

/// <summary>The whole run's data order, computed up front from the seed: each epoch shuffles the examples with a
/// xoshiro256** generator continued from the previous epoch, packs them into rows when asked (greedy, in order, whole
/// examples only), and cuts the rows into steps of MicroBatchSize · GradientAccumulation rows (the last step of an
/// epoch may be shorter).</summary>
internal sealed class TrainingPlan
{
    public IReadOnlyList<StepPlan> Steps { get; }
    /// <summary>The data-order generator's state at the start of each epoch.</summary>
    public IReadOnlyList<ulong[]> EpochRngStates { get; }
    public int MaxRowTokens { get; }
    /// <summary>The generator's state after the last epoch.</summary>
    public ulong[] FinalRngState { get; }

    public TrainingPlan(IReadOnlyList<TrainingExample> examples, TrainingHyperparameters hp, int maxRowTokens)
    {
        MaxRowTokens = maxRowTokens;
        var rng = new Rng(hp.Seed);
        var steps = new List<StepPlan>();
        var states = new List<ulong[]>();
        int perStep = hp.MicroBatchSize * hp.GradientAccumulation;
        for (int e = 0; e < hp.Epochs; e++)
        {
            states.Add(rng.GetState());
            var order = Enumerable.Range(0, examples.Count).ToArray();
            if (hp.Shuffle)
                for (int i = order.Length - 1; i > 0; i--)
                {
                    int j = rng.NextInt(i + 1);
                    (order[i], order[j]) = (order[j], order[i]);
                }
            var rows = new List<TrainingExample[]>();
            if (hp.Packing)
            {
                var row = new List<TrainingExample>();
                int len = 0;
                foreach (int i in order)
                {
                    var ex = examples[i];
                    if (len + ex.Length > maxRowTokens && row.Count > 0)
                    {
                        rows.Add(row.ToArray());
                        row.Clear();
                        len = 0;
                    }
                    row.Add(ex);
                    len += ex.Length;
                }
                if (row.Count > 0) rows.Add(row.ToArray());
            }
            else
                foreach (int i in order) rows.Add([examples[i]]);
            for (int r = 0; r < rows.Count; r += perStep)
            {
                var stepRows = rows.GetRange(r, Math.Min(perStep, rows.Count - r)).ToArray();
                steps.Add(new StepPlan(e, r, stepRows, stepRows.Sum(x => x.Sum(ex => ex.TrainedTokens)), stepRows.Sum(x => x.Sum(ex => ex.Length))));
            }
        }
        Steps = steps;
        EpochRngStates = states;
        FinalRngState = rng.GetState();
    }

    public int RowsInEpoch(int epoch) => Steps.Where(s => s.Epoch == epoch).Sum(s => s.Rows.Length);
}
