using ILGPU;
using ILGPU.Runtime;

namespace Loom.Inference.Model.Gpu;

/// <summary>The device side of one <see cref="ForwardState"/>: every activation of the forward pass, allocated once for
/// the state's capacity, and the host arrays that carry a batch's small tables up. Nothing is allocated per call except
/// when a batch's KV page tables outgrow the table buffer (it doubles).</summary>
internal sealed class DeviceActivations : IDisposable
{
    private readonly Accelerator _a;
    private readonly List<IDisposable> _owned = [];

    public readonly ArrayView<float> X, Xb, Q, K, V, Att, Hb, Hb2, Last, Logits, LoraScratch;
    public readonly ArrayView<int> Tokens, Positions, Lengths, TableOffset, TokenSlot, LastIndex, Ids;
    // X, Xb (MaxTokens, dim); Q, Att (MaxTokens, qDim); K, V (MaxTokens, kvDim); Hb, Hb2 (MaxTokens, hidden);
    // Last (MaxSequences, dim); Logits (MaxSequences or MaxTokens, vocab); LoraScratch (MaxTokens, max(1, MaxLoraRank));
    // Ids (MaxSequences)
    public MemoryBuffer1D<int, Stride1D.Dense> KvTable { get; private set; } // (grows) the batch's page tables, concatenated

    public readonly int[] HostTableOffset, HostTokenSlot, HostLastIndex; // (MaxTokens), (MaxTokens), (MaxSequences)
    public int[] HostKvTable = new int[1024];                            // (grows)
    public DeviceSampler? Sampler;                                       // made at the first sampling on the device

    public DeviceActivations(Accelerator a, ModelConfig c, ForwardState s)
    {
        _a = a;
        int T = s.MaxTokens, S = s.MaxSequences;
        X = F((long)T * c.HiddenSize);
        Xb = F((long)T * c.HiddenSize);
        Q = F((long)T * c.QDim);
        K = F((long)T * c.KvDim);
        V = F((long)T * c.KvDim);
        Att = F((long)T * c.QDim);
        Hb = F((long)T * c.IntermediateSize);
        Hb2 = F((long)T * c.IntermediateSize);
        Last = F((long)S * c.HiddenSize);
        Logits = F((long)(s.AllPositionLogits ? T : S) * c.VocabSize);
        LoraScratch = F((long)T * Math.Max(1, s.MaxLoraRank));
        Tokens = I(T);
        Positions = I(T);
        Lengths = I(T);
        TableOffset = I(T);
        TokenSlot = I(T);
        LastIndex = I(S);
        Ids = I(S);
        HostTableOffset = new int[T];
        HostTokenSlot = new int[T];
        HostLastIndex = new int[S];
        KvTable = a.Allocate1D<int>(1024);
    }

    private ArrayView<float> F(long n)
    {
        var b = _a.Allocate1D<float>(Math.Max(1, n));
        _owned.Add(b);
        return b.View;
    }

    private ArrayView<int> I(long n)
    {
        var b = _a.Allocate1D<int>(Math.Max(1, n));
        _owned.Add(b);
        return b.View;
    }

    /// <summary>Room for <paramref name="ints"/> page ids on both sides.</summary>
    public void EnsureTable(int ints)
    {
        if (ints <= HostKvTable.Length) return;
        int n = HostKvTable.Length;
        while (n < ints) n *= 2;
        HostKvTable = new int[n];
        KvTable.Dispose();
        KvTable = _a.Allocate1D<int>(n);
    }

    public void Dispose()
    {
        foreach (var b in _owned) b.Dispose();
        Sampler?.Dispose();
        KvTable.Dispose();
    }
}
