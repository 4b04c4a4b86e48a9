using System.Security.Cryptography;
using System.Text;

namespace Loom.Jobs.FineTuning;

/// <summary>
/// Fine-tunes run where their base model is served: each is enqueued on a Hangfire queue named for the base model,
/// and only processes whose engine serves that model listen to it (<see cref="FineTuneServer"/>). Maintenance jobs
/// stay on Hangfire's default queue, which the jobs role's server listens to.
/// </summary>
public static class FineTuneQueues
{
    public const string Prefix = "ft_";

    /// <summary>The queue of <paramref name="baseModelName"/>: <c>ft_</c>, the name in lower case with anything but
    /// letters and digits made '_' (at most 40 characters), '_', and 8 hex digits of the name's SHA-256 (so names that
    /// read alike, "a-b" and "a_b", get different queues). Hangfire queue names allow lower-case letters, digits and '_'.</summary>
    public static string For(string baseModelName)
    {
        ArgumentException.ThrowIfNullOrEmpty(baseModelName);
        var sb = new StringBuilder(Prefix);
        foreach (var c in baseModelName.ToLowerInvariant())
        {
            if (sb.Length >= Prefix.Length + 40) break;
            sb.Append(char.IsAsciiLetterLower(c) || char.IsAsciiDigit(c) ? c : '_');
        }
        var hash = SHA256.HashData(Encoding.UTF8.GetBytes(baseModelName));
        return sb.Append('_').Append(Convert.ToHexStringLower(hash.AsSpan(0, 4))).ToString();
    }
}
