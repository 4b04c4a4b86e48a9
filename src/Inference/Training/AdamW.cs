namespace Loom.Inference.Training;

/// <summary>AdamW over the LoRA parameters with f32 state, after clipping the global gradient norm, as
/// torch.optim.AdamW and torch.nn.utils.clip_grad_norm_ do: θ ← θ(1 − lr·wd); m ← β₁m + (1−β₁)g; v ← β₂v + (1−β₂)g²;
/// θ ← θ − lr/(1−β₁ᵗ) · m / (√v/√(1−β₂ᵗ) + ε). Per-element arithmetic in double, stored as f32; modules in parallel
/// (each element's result does not depend on the others, so the result does not depend on the cores).</summary>
internal static class AdamW
{
    /// <summary>The global L2 norm of all gradients (per-module partial sums added in module order).</summary>
    public static double GradientNorm(LoraParameters p)
    {
        var partial = new double[p.Modules.Count];
        Parallel.For(0, p.Modules.Count, i =>
        {
            var m = p.Modules[i];
            double s = 0;
            foreach (float g in m.GA) s += (double)g * g;
            foreach (float g in m.GBt) s += (double)g * g;
            partial[i] = s;
        });
        double total = 0;
        foreach (double s in partial) total += s;
        return Math.Sqrt(total);
    }

    /// <summary>Clips, then applies step <paramref name="t"/> (1-based) with learning rate <paramref name="lr"/>. Returns
    /// the gradient norm before clipping.</summary>
    public static double Step(LoraParameters p, TrainingHyperparameters hp, int t, double lr)
    {
        double norm = GradientNorm(p);
        double clip = hp.MaxGradNorm > 0 && hp.MaxGradNorm / (norm + 1e-6) < 1 ? hp.MaxGradNorm / (norm + 1e-6) : 1;
        double b1 = hp.Beta1, b2 = hp.Beta2, eps = hp.Epsilon, decay = 1 - lr * hp.WeightDecay;
        double stepSize = lr / (1 - Math.Pow(b1, t)), bc2 = Math.Sqrt(1 - Math.Pow(b2, t));
        Parallel.For(0, p.Modules.Count, i =>
        {
            var m = p.Modules[i];
            Update(m.A, m.GA, m.MA, m.VA);
            Update(m.Bt, m.GBt, m.MBt, m.VBt);
        });
        return norm;

        void Update(float[] w, float[] g, float[] mo, float[] vo)
        {
            for (int j = 0; j < w.Length; j++)
            {
                double gj = g[j] * clip;
                double m = mo[j] + (1 - b1) * (gj - mo[j]);
                double v = vo[j] * b2 + (1 - b2) * gj * gj;
                mo[j] = (float)m;
                vo[j] = (float)v;
                w[j] = (float)(w[j] * decay - stepSize * mo[j] / (Math.Sqrt(vo[j]) / bc2 + eps));
            }
        }
    }
}
