using System.Text;
using System.Text.RegularExpressions;

namespace Loom.Inference.Tokenization;

/// <summary>One chat turn. Role is "system", "user" or "assistant".</summary>
public sealed record ChatMessage(string Role, string Content);

/// <summary>The chat formats Loom renders. Each is recognised from tokenizer_config.json's Jinja chat_template
/// by its markers; the Jinja itself is not executed.</summary>
public enum ChatTemplateFamily
{
    /// <summary><c>&lt;|im_start|&gt;role\ncontent&lt;|im_end|&gt;\n</c> (Qwen2, the demo model, many others).</summary>
    ChatMl,

    /// <summary><c>&lt;|start_header_id|&gt;role&lt;|end_header_id|&gt;\n\ncontent&lt;|eot_id|&gt;</c> after BOS.</summary>
    Llama3,

    /// <summary><c>&lt;s&gt;[INST] &lt;&lt;SYS&gt;&gt;\nsystem\n&lt;&lt;/SYS&gt;&gt;\n\nuser [/INST] answer &lt;/s&gt;</c>.</summary>
    Llama2,

    /// <summary>Mistral's <c>[INST]</c> format without <c>&lt;&lt;SYS&gt;&gt;</c>: BOS once, <c>[INST] user [/INST]answer&lt;/s&gt;</c>;
    /// a system message is put before the first user message, separated by a blank line.</summary>
    Mistral,
}

/// <summary>Renders a conversation to the prompt text a model was trained on. The text contains special tokens
/// as literal strings (BOS included for Llama-3 and Llama-2), so encode it with addSpecialTokens: false.</summary>
public sealed partial class ChatTemplate
{
    private ChatTemplate(ChatTemplateFamily family, string bosToken, string eosToken, string? defaultSystemPrompt)
    {
        Family = family;
        BosToken = bosToken;
        EosToken = eosToken;
        DefaultSystemPrompt = defaultSystemPrompt;
    }

    public ChatTemplateFamily Family { get; }
    public string BosToken { get; }
    public string EosToken { get; }

    /// <summary>The system prompt the template inserts when the conversation has none (Qwen2's
    /// "You are a helpful assistant."), or null.</summary>
    public string? DefaultSystemPrompt { get; }

    /// <summary>The token that ends an assistant turn; generation should stop on it.</summary>
    public string EndOfTurnToken => Family switch
    {
        ChatTemplateFamily.ChatMl => "<|im_end|>",
        ChatTemplateFamily.Llama3 => "<|eot_id|>",
        _ => EosToken,
    };

    /// <summary>Recognises the family of a Jinja chat template, or returns null.</summary>
    public static ChatTemplateFamily? DetectFamily(string chatTemplate) =>
        chatTemplate.Contains("<|start_header_id|>", StringComparison.Ordinal) ? ChatTemplateFamily.Llama3
        : chatTemplate.Contains("<|im_start|>", StringComparison.Ordinal) ? ChatTemplateFamily.ChatMl
        : chatTemplate.Contains("[INST]", StringComparison.Ordinal)
            ? chatTemplate.Contains("<<SYS>>", StringComparison.Ordinal) ? ChatTemplateFamily.Llama2 : ChatTemplateFamily.Mistral
        : null;

    /// <summary>Builds the template from tokenizer_config.json's chat_template, bos_token and eos_token.</summary>
    /// <exception cref="NotSupportedException">The template is none of the known families.</exception>
    public static ChatTemplate FromTokenizerConfig(string chatTemplate, string? bosToken, string? eosToken)
    {
        ArgumentNullException.ThrowIfNull(chatTemplate);
        var family = DetectFamily(chatTemplate) ?? throw new NotSupportedException(
            "The chat_template is not one of the supported families (ChatML <|im_start|>, Llama-3 " +
            "<|start_header_id|>, Llama-2/Mistral [INST]).");
        if (family is ChatTemplateFamily.Llama3 or ChatTemplateFamily.Llama2 or ChatTemplateFamily.Mistral &&
            (bosToken is null || eosToken is null))
            throw new NotSupportedException($"A {family} chat template needs bos_token and eos_token in tokenizer_config.json.");
        string? defaultSystem = null;
        if (family == ChatTemplateFamily.ChatMl && DefaultSystemPattern().Match(chatTemplate) is { Success: true } m)
            defaultSystem = m.Groups["prompt"].Value;
        return new ChatTemplate(family, bosToken ?? "", eosToken ?? "", defaultSystem);
    }

    /// <summary>Renders the conversation; with <paramref name="addGenerationPrompt"/>, ends with the header of an
    /// assistant turn (ChatML, Llama-3; the [INST] formats need none).</summary>
    /// <exception cref="ArgumentException">Roles the format cannot express (e.g. Llama-2 turns not alternating).</exception>
    public string Render(IReadOnlyList<ChatMessage> messages, bool addGenerationPrompt)
    {
        ArgumentNullException.ThrowIfNull(messages);
        return Family switch
        {
            ChatTemplateFamily.ChatMl => RenderChatMl(messages, addGenerationPrompt),
            ChatTemplateFamily.Llama3 => RenderLlama3(messages, addGenerationPrompt),
            _ => RenderInst(messages),
        };
    }

    private string RenderChatMl(IReadOnlyList<ChatMessage> messages, bool addGenerationPrompt)
    {
        var text = new StringBuilder();
        if (DefaultSystemPrompt is not null && (messages.Count == 0 || messages[0].Role != "system"))
            text.Append("<|im_start|>system\n").Append(DefaultSystemPrompt).Append("<|im_end|>\n");
        foreach (var message in messages)
            text.Append("<|im_start|>").Append(message.Role).Append('\n').Append(message.Content).Append("<|im_end|>\n");
        if (addGenerationPrompt) text.Append("<|im_start|>assistant\n");
        return text.ToString();
    }

    private string RenderLlama3(IReadOnlyList<ChatMessage> messages, bool addGenerationPrompt)
    {
        var text = new StringBuilder(BosToken);
        foreach (var message in messages)
            text.Append("<|start_header_id|>").Append(message.Role).Append("<|end_header_id|>\n\n")
                .Append(message.Content.Trim()).Append("<|eot_id|>");
        if (addGenerationPrompt) text.Append("<|start_header_id|>assistant<|end_header_id|>\n\n");
        return text.ToString();
    }

    private string RenderInst(IReadOnlyList<ChatMessage> messages)
    {
        string? system = null;
        var turns = messages;
        if (messages.Count > 0 && messages[0].Role == "system")
        {
            system = messages[0].Content;
            turns = messages.Skip(1).ToList();
        }
        var text = new StringBuilder();
        if (Family == ChatTemplateFamily.Mistral) text.Append(BosToken);
        for (var i = 0; i < turns.Count; i++)
        {
            var expected = i % 2 == 0 ? "user" : "assistant";
            if (turns[i].Role != expected)
                throw new ArgumentException(
                    $"Message {i} has role '{turns[i].Role}'; {Family} conversations must alternate user/assistant after an optional system message.",
                    nameof(messages));
            var content = turns[i].Content;
            if (i == 0 && system is not null)
                content = Family == ChatTemplateFamily.Llama2 ? $"<<SYS>>\n{system}\n<</SYS>>\n\n{content}" : $"{system}\n\n{content}";
            if (Family == ChatTemplateFamily.Llama2)
                text.Append(expected == "user" ? $"{BosToken}[INST] {content.Trim()} [/INST]" : $" {content.Trim()} {EosToken}");
            else
                text.Append(expected == "user" ? $"[INST] {content} [/INST]" : $"{content}{EosToken}");
        }
        return text.ToString();
    }

    [GeneratedRegex(@"<\|im_start\|>system(?:\n|\\n)(?<prompt>[^{}'""\\<]+)<\|im_end\|>")]
    private static partial Regex DefaultSystemPattern();
}
