"""Built-in training text and the fixed test strings for the golden tokenizer files."""

CORPUS = """
The quick brown fox jumps over the lazy dog. The dog was not amused, and the fox ran into the forest.
In the beginning there was a tokenizer, and the tokenizer split the text into pieces. Pieces became
tokens, tokens became ids, and the ids went into the model. The model learned to predict the next
token, one token at a time, until the answer was complete. It's what they've always done; we'll see
what you'd say if I'm wrong. They're sure it's fine. Don't worry, you'll be fine, she said.
Numbers matter too: 1, 2, 3, 10, 42, 100, 2024, 3.14159, 1234567890, and 0.5 percent of 250 is 1.25.
def forward(self, x):
    return self.norm(x) + self.attention(x)  # residual connection

for i in range(10):
    print(i * i)
Fine-tuning adapters with low rank matrices lets many tenants share one base model. Adapters are small,
training is fast, and serving thousands of adapters on one machine is the goal of this platform.
東京は日本の首都です。私は日本語を勉強しています。中文的文本也很常见，我们在这里测试分词器。
汉字和假名混合在一起。한국어 문장도 조금 있습니다. Привет, как дела? Ελληνικά γράμματα. café naïve résumé.
Emoji appear sometimes: 😀 😀 👍 🎉 and hearts ❤️ ❤️.
The tokenizer must handle whitespace   runs,	tabs, and
newlines

correctly, as well as "quotes" and 'single quotes' and (parentheses) [brackets] {braces}.
"""

# Strings every golden file encodes; {bos}, {start}, {end} are filled with the family's special tokens.
TEST_STRINGS = [
    "Hello, world!",
    "The quick brown fox jumps over the lazy dog.",
    "",
    " ",
    "    ",
    "  leading spaces and trailing   ",
    "line one\nline two\r\n\n\ttabbed\n",
    "Numbers: 1234567 and 3.14159, 2026-11-22",
    "I'm sure you've seen what they'll do, DON'T you? HE'S THERE'LL",
    "日本語のテキストと中文字符",
    "한국어 텍스트입니다",
    "Emoji: 😀👍🏽 👨‍👩‍👧‍👦 family 🇺🇸 flag ❤️",
    "😀abc 🎉party",
    "Combining: e\u0301 n\u0303 a\u0308 (cafe\u0301 vs caf\u00e9)",
    "Supplementary letters: 𝐀𝐁𝐂 𠀀𠀁 and digits 𝟙𝟚𝟛",
    "code: def f(x):\n    return x**2  # square\n",
    "Mixed: Ünïcödé straße İstanbul ΑΒΓ αβγ Привет мир",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    "\u00a0nbsp and\u3000ideographic space",
    "tokens tokenizer tokenization tokenized",
    "Special {start}user\nhi there{end} tokens",
    "{bos}at the start and {end}{start}adjacent",
]
