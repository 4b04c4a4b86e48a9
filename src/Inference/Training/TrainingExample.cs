namespace Loom.Inference.Training;

/// <summary>One training sequence: token ids and, per token, whether it is trained. Token i is trained when
/// <c>LossMask[i]</c> is true: the model's prediction of it from tokens 0..i-1 counts in the loss (so LossMask[0]
/// never counts: nothing precedes it). Chat data trains the assistant turns, prompt/completion data the completion
/// (see <see cref="JsonlExamples"/>).</summary>
/// <param name="TokenIds">(length) token ids, BOS included when the model uses one.</param>
/// <param name="LossMask">(length) true for trained tokens.</param>
public sealed record TrainingExample(int[] TokenIds, bool[] LossMask)
{
    public int Length => TokenIds.Length;

    /// <summary>Tokens whose prediction counts in the loss (LossMask[0] excluded).</summary>
    public int TrainedTokens
    {
        get
        {
            int n = 0;
            for (int i = 1; i < LossMask.Length; i++) if (LossMask[i]) n++;
            return n;
        }
    }

    /// <summary>An example whose every token after the first is trained (plain language-model data).</summary>
    public static TrainingExample AllTrained(int[] tokenIds)
    {
        var mask = new bool[tokenIds.Length];
        for (int i = 1; i < mask.Length; i++) mask[i] = true;
        return new TrainingExample(tokenIds, mask);
    }

    /// <summary>The first problem of this example for a model with <paramref name="vocabSize"/> tokens and a context of
    /// <paramref name="maxLength"/>, or null.</summary>
    public string? Problem(int vocabSize, int maxLength)
    {
        if (TokenIds is null || LossMask is null) return "token ids and loss mask are required";
        if (TokenIds.Length != LossMask.Length) return $"{TokenIds.Length} token ids but {LossMask.Length} loss mask entries";
        if (TokenIds.Length < 2) return "an example needs at least two tokens";
        if (TokenIds.Length > maxLength) return $"{TokenIds.Length} tokens exceed the training context of {maxLength}";
        foreach (int id in TokenIds)
            if ((uint)id >= (uint)vocabSize) return $"token id {id} is outside the vocabulary ({vocabSize})";
        if (TrainedTokens == 0) return "no token is trained (the loss mask is false after the first token)";
        return null;
    }
}
