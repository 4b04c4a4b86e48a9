using Loom.Inference.Formats;
using Loom.Inference.Model;

namespace Loom.Inference.Training;

/// <summary>What one decoder layer's forward pass keeps for its backward pass, for a row of up to T tokens.</summary>
internal sealed class LayerActivations
{
    public readonly float[] Xn1;   // (T, dim) attention-normed input (input of q, k, v)
    public readonly float[] Q;     // (T, heads*hd) queries after RoPE
    public readonly float[] K;     // (T, kvHeads*hd) keys after RoPE
    public readonly float[] V;     // (T, kvHeads*hd)
    public readonly float[] P;     // (heads, T, T) attention probabilities
    public readonly float[] Att;   // (T, heads*hd) attention output (input of o)
    public readonly float[] Xmid;  // (T, dim) residual after attention
    public readonly float[] Xn2;   // (T, dim) mlp-normed input (input of gate, up)
    public readonly float[] G;     // (T, hidden) gate before SiLU
    public readonly float[] Up;    // (T, hidden)
    public readonly float[] H;     // (T, hidden) silu(gate)·up (input of down)
    public readonly float[][] U;   // [LoraTargets.Count] (T, r) x·Aᵀ of each trained module (empty when not trained)

    public LayerActivations(ModelConfig c, int T, int rank, IReadOnlyList<LoraTarget> targets)
    {
        Xn1 = new float[T * c.HiddenSize];
        Q = new float[T * c.QDim];
        K = new float[T * c.KvDim];
        V = new float[T * c.KvDim];
        P = new float[(long)c.NumHeads * T * T];
        Att = new float[T * c.QDim];
        Xmid = new float[T * c.HiddenSize];
        Xn2 = new float[T * c.HiddenSize];
        G = new float[T * c.IntermediateSize];
        Up = new float[T * c.IntermediateSize];
        H = new float[T * c.IntermediateSize];
        U = new float[LoraTargets.Count][];
        for (int i = 0; i < U.Length; i++) U[i] = targets.Contains((LoraTarget)i) ? new float[T * rank] : [];
    }

    /// <summary>A set that shares every buffer of <paramref name="shared"/> but the keys and values: a recomputed layer's
    /// set, whose keys and values outlive the other layers' use of the shared buffers (a chunked forward pass reads the
    /// earlier chunks' keys and values of each layer).</summary>
    public LayerActivations(LayerActivations shared, int T, int kvDim)
    {
        Xn1 = shared.Xn1; Q = shared.Q; P = shared.P; Att = shared.Att; Xmid = shared.Xmid; Xn2 = shared.Xn2;
        G = shared.G; Up = shared.Up; H = shared.H; U = shared.U;
        K = new float[T * kvDim];
        V = new float[T * kvDim];
    }

    /// <summary>Bytes one set takes for rows of T tokens.</summary>
    public static long BytesFor(ModelConfig c, int T, int rank, int targets) =>
        sizeof(float) * ((long)T * (3L * c.HiddenSize + 2L * c.QDim + 2L * c.KvDim + 3L * c.IntermediateSize + (long)targets * rank)
            + (long)c.NumHeads * T * T);
}
