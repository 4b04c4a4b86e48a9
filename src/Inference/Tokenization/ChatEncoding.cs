namespace Loom.Inference.Tokenization;

/// <summary>Renders a conversation with the tokenizer's chat template and encodes it.</summary>
public static class ChatEncoding
{
    /// <summary>The prompt ids for <paramref name="messages"/>. The template writes BOS itself where the family
    /// wants it, so the text is encoded without the post-processor's special tokens (no double BOS).</summary>
    /// <exception cref="InvalidOperationException">The tokenizer has no chat template.</exception>
    public static int[] EncodeChat(this ITokenizer tokenizer, IReadOnlyList<ChatMessage> messages, bool addGenerationPrompt = true)
    {
        ArgumentNullException.ThrowIfNull(tokenizer);
        var template = tokenizer.ChatTemplate
                       ?? throw new InvalidOperationException("This tokenizer's tokenizer_config.json has no chat_template.");
        return tokenizer.Encode(template.Render(messages, addGenerationPrompt), addSpecialTokens: false);
    }
}
