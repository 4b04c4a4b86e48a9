namespace Loom.Inference.Training;

/// <summary>The learning rate of optimizer step s (0-based) of <c>total</c>: linear warmup lr·(s+1)/warmup for
/// s &lt; warmup, then linear decay lr·(1 − (s − warmup)/(total − warmup)), cosine decay
/// lr·½(1 + cos(π(s − warmup)/(total − warmup))), or constant.</summary>
public static class LearningRate
{
    public static double At(TrainingHyperparameters hp, int step, int total)
    {
        double lr = hp.LearningRate;
        int warm = hp.WarmupSteps;
        if (step < warm) return lr * (step + 1) / warm;
        if (hp.Schedule == LearningRateSchedule.Constant || total <= warm) return lr;
        double frac = (double)(step - warm) / (total - warm);
        return hp.Schedule == LearningRateSchedule.Cosine ? lr * 0.5 * (1 + Math.Cos(Math.PI * frac)) : lr * (1 - frac);
    }
}
