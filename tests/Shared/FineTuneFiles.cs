using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;

namespace Loom.Tests.Shared;

/// <summary>Training files for fine-tuning tests: the data and its upload through /v1/files.</summary>
public static class FineTuneFiles
{
    /// <summary>Prompt/completion lines teaching a fixed answer per word.</summary>
    public static string Examples(int count, string tag = "")
    {
        var sb = new StringBuilder();
        for (int i = 0; i < count; i++) sb.Append(JsonSerializer.Serialize(new { prompt = $"word {i}{tag}:", completion = $" answer {i % 3}" })).Append('\n');
        return sb.ToString();
    }

    /// <summary>Uploads <paramref name="content"/> as a fine-tune file and returns its id.</summary>
    public static async Task<string> UploadAsync(HttpClient client, string content)
    {
        var form = new MultipartFormDataContent();
        var file = new ByteArrayContent(Encoding.UTF8.GetBytes(content));
        file.Headers.ContentType = new MediaTypeHeaderValue("application/jsonl");
        form.Add(file, "file", "train.jsonl");
        form.Add(new StringContent("fine-tune"), "purpose");
        var response = await client.PostAsync("/v1/files", form);
        var body = await response.Content.ReadAsStringAsync();
        Assert.True(response.IsSuccessStatusCode, body);
        return JsonDocument.Parse(body).RootElement.GetProperty("id").GetString()!;
    }
}
