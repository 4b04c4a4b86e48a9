using Loom.Inference.Tokenization;

namespace Loom.Inference.Tests.Tokenization;

public sealed class ChatTemplateTests
{
    private static readonly ChatMessage[] Conversation =
    [
        new("system", "Be brief."),
        new("user", "Hi!"),
        new("assistant", " Hello. "),
        new("user", "2+2?"),
    ];

    [Theory]
    [InlineData("gpt2-chatml", ChatTemplateFamily.ChatMl)]
    [InlineData("qwen2", ChatTemplateFamily.ChatMl)]
    [InlineData("llama3", ChatTemplateFamily.Llama3)]
    [InlineData("llama2-sp", ChatTemplateFamily.Llama2)]
    public void FamilyIsDetectedFromTheConfigTemplate(string tokenizer, ChatTemplateFamily family)
    {
        Assert.Equal(family, GoldenTokenizers.Load(tokenizer).ChatTemplate!.Family);
    }

    [Fact]
    public void ChatMlRendersTurnsAndGenerationPrompt()
    {
        var template = GoldenTokenizers.Load("gpt2-chatml").ChatTemplate!;
        Assert.Null(template.DefaultSystemPrompt);
        Assert.Equal(
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi!<|im_end|>\n" +
            "<|im_start|>assistant\n Hello. <|im_end|>\n<|im_start|>user\n2+2?<|im_end|>\n<|im_start|>assistant\n",
            template.Render(Conversation, addGenerationPrompt: true));
    }

    [Fact]
    public void Qwen2InsertsItsDefaultSystemPromptOnlyWhenThereIsNone()
    {
        var template = GoldenTokenizers.Load("qwen2").ChatTemplate!;
        Assert.Equal("You are a helpful assistant.", template.DefaultSystemPrompt);
        Assert.Equal("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nHi!<|im_end|>\n",
            template.Render([new ChatMessage("user", "Hi!")], addGenerationPrompt: false));
        Assert.StartsWith("<|im_start|>system\nBe brief.<|im_end|>\n", template.Render(Conversation, false));
    }

    [Fact]
    public void Llama3StartsWithBosAndTrimsContent()
    {
        var template = GoldenTokenizers.Load("llama3").ChatTemplate!;
        Assert.Equal(
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>" +
            "<|start_header_id|>user<|end_header_id|>\n\nHi!<|eot_id|>" +
            "<|start_header_id|>assistant<|end_header_id|>\n\nHello.<|eot_id|>" +
            "<|start_header_id|>user<|end_header_id|>\n\n2+2?<|eot_id|>" +
            "<|start_header_id|>assistant<|end_header_id|>\n\n",
            template.Render(Conversation, addGenerationPrompt: true));
    }

    [Fact]
    public void Llama2FoldsTheSystemMessageIntoTheFirstUserTurn()
    {
        var template = GoldenTokenizers.Load("llama2-sp").ChatTemplate!;
        Assert.Equal(
            "<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi! [/INST] Hello. </s><s>[INST] 2+2? [/INST]",
            template.Render(Conversation, addGenerationPrompt: true));
    }

    [Fact]
    public void Llama2RejectsTurnsThatDoNotAlternate()
    {
        var template = GoldenTokenizers.Load("llama2-sp").ChatTemplate!;
        var ex = Assert.Throws<ArgumentException>(() =>
            template.Render([new ChatMessage("user", "a"), new ChatMessage("user", "b")], false));
        Assert.Contains("alternate", ex.Message);
    }

    [Fact]
    public void MistralStyleTemplateWithoutSysBlockPutsSystemBeforeFirstUserMessage()
    {
        var template = ChatTemplate.FromTokenizerConfig(
            "{{ bos_token }}{% for message in messages %}{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}" +
            "{% else %}{{ message['content'] + eos_token }}{% endif %}{% endfor %}", "<s>", "</s>");
        Assert.Equal(ChatTemplateFamily.Mistral, template.Family);
        Assert.Equal("<s>[INST] Be brief.\n\nHi! [/INST] Hello. </s>[INST] 2+2? [/INST]", template.Render(Conversation, true));
    }

    [Fact]
    public void RenderedChatEncodesSpecialTokensAsSingleIdsAndEndOfTurnStopsGeneration()
    {
        var tok = GoldenTokenizers.Load("gpt2-chatml");
        var prompt = tok.ChatTemplate!.Render([new ChatMessage("user", "Hi!")], addGenerationPrompt: true);
        var ids = tok.Encode(prompt);
        var imStart = tok.TokenToId("<|im_start|>")!.Value;
        var imEnd = tok.TokenToId("<|im_end|>")!.Value;
        Assert.Equal(imStart, ids[0]);
        Assert.Equal(2, ids.Count(id => id == imStart));
        Assert.Single(ids, imEnd);
        Assert.Contains(imEnd, tok.EosTokenIds);
        Assert.Contains(tok.TokenToId("<|endoftext|>")!.Value, tok.EosTokenIds);
        Assert.Equal(prompt, tok.Decode(ids, skipSpecialTokens: false));
    }

    [Fact]
    public void UnknownTemplateFailsClearly()
    {
        Assert.Throws<NotSupportedException>(() =>
            ChatTemplate.FromTokenizerConfig("{% for m in messages %}<<{{ m.role }}>>{{ m.content }}{% endfor %}", null, null));

        using var dir = new TempModelFolder("gpt2-chatml");
        dir.EditConfig(config => config["chat_template"] = "{% for m in messages %}### {{ m.content }}{% endfor %}");
        var tok = TokenizerLoader.Load(dir.Path);
        Assert.NotEmpty(tok.Encode("Hello")); // the tokenizer itself still works
        var ex = Assert.Throws<TokenizerFormatException>(() => tok.ChatTemplate);
        Assert.EndsWith("tokenizer_config.json", ex.FilePath);
    }

    [Fact]
    public void TemplateListUsesTheDefaultEntry()
    {
        using var dir = new TempModelFolder("llama3");
        dir.EditConfig(config =>
        {
            var template = config["chat_template"]!.GetValue<string>();
            config["chat_template"] = new System.Text.Json.Nodes.JsonArray(
                new System.Text.Json.Nodes.JsonObject { ["name"] = "tool_use", ["template"] = "{{ '<|im_start|>' }}" },
                new System.Text.Json.Nodes.JsonObject { ["name"] = "default", ["template"] = template });
        });
        Assert.Equal(ChatTemplateFamily.Llama3, TokenizerLoader.Load(dir.Path).ChatTemplate!.Family);
    }

    [Theory]
    [InlineData("llama3")]
    [InlineData("llama2-sp")]
    public void EncodeChatPutsExactlyOneBosAtTheStart(string tokenizer)
    {
        var tok = GoldenTokenizers.Load(tokenizer);
        var ids = tok.EncodeChat([new ChatMessage("user", "Hi!")]);
        Assert.Equal(tok.BosTokenId, ids[0]);
        Assert.Single(ids, tok.BosTokenId!.Value);
    }

    [Fact]
    public void EncodeChatWithoutTemplateFails()
    {
        using var dir = new TempModelFolder("gpt2-chatml");
        dir.EditConfig(config => config.Remove("chat_template"));
        var tok = TokenizerLoader.Load(dir.Path);
        Assert.Null(tok.ChatTemplate);
        Assert.Throws<InvalidOperationException>(() => tok.EncodeChat([new ChatMessage("user", "Hi!")]));
    }
}
