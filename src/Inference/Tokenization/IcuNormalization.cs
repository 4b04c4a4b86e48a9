using System.Runtime.InteropServices;
using System.Text;

namespace Loom.Inference.Tokenization;

/// <summary>Unicode normalization that works with InvariantGlobalization on (where string.Normalize is a no-op):
/// it calls the system ICU library (libicuuc) directly, probing the versioned symbol names.
/// Text with no character at or above U+0300 is returned as is, since it is already in every form.</summary>
internal static unsafe class IcuNormalization
{
    private static readonly Lazy<Api?> Icu = new(LoadIcu);

    public static string Normalize(string text, NormalizationForm form)
    {
        if (!NeedsWork(text)) return text;
        var api = Icu.Value ?? throw new PlatformNotSupportedException(
            "Unicode normalization needs the ICU library (libicuuc), which was not found on this machine.");
        var status = 0;
        var instance = form switch
        {
            NormalizationForm.FormC => api.GetInstance("nfc", 0, &status),
            NormalizationForm.FormD => api.GetInstance("nfc", 1, &status),
            NormalizationForm.FormKC => api.GetInstance("nfkc", 0, &status),
            _ => api.GetInstance("nfkc", 1, &status),
        };
        if (status > 0) throw new InvalidOperationException($"ICU normalizer instance failed with status {status}.");
        var capacity = text.Length * 3 + 16;
        while (true)
        {
            var buffer = new char[capacity];
            status = 0;
            int length;
            fixed (char* source = text)
            fixed (char* destination = buffer)
                length = api.Normalize(instance, source, text.Length, destination, capacity, &status);
            if (status == BufferOverflowError && length > capacity) { capacity = length; continue; }
            if (status > 0) throw new InvalidOperationException($"ICU normalization failed with status {status}.");
            return new string(buffer, 0, length);
        }
    }

    private const int BufferOverflowError = 15;

    private static bool NeedsWork(string text)
    {
        foreach (var c in text)
            if (c >= '\u0300') return true;
        return false;
    }

    private sealed class Api
    {
        public required delegate* unmanaged<byte*, byte*, int, int*, nint> GetInstanceRaw { get; init; }
        public required delegate* unmanaged<nint, char*, int, char*, int, int*, int> Normalize { get; init; }

        public nint GetInstance(string name, int mode, int* status)
        {
            var bytes = Encoding.ASCII.GetBytes(name + "\0");
            fixed (byte* n = bytes) return GetInstanceRaw(null, n, mode, status);
        }
    }

    private static Api? LoadIcu()
    {
        foreach (var version in Enumerable.Range(50, 40).Reverse())
        {
            if (!NativeLibrary.TryLoad($"libicuuc.so.{version}", out var handle)) continue;
            if (NativeLibrary.TryGetExport(handle, $"unorm2_getInstance_{version}", out var getInstance) &&
                NativeLibrary.TryGetExport(handle, $"unorm2_normalize_{version}", out var normalize))
            {
                return new Api
                {
                    GetInstanceRaw = (delegate* unmanaged<byte*, byte*, int, int*, nint>)getInstance,
                    Normalize = (delegate* unmanaged<nint, char*, int, char*, int, int*, int>)normalize,
                };
            }
        }
        return NativeLibrary.TryLoad("libicuuc.so", out var plain) &&
               NativeLibrary.TryGetExport(plain, "unorm2_getInstance", out var gi) &&
               NativeLibrary.TryGetExport(plain, "unorm2_normalize", out var nz)
            ? new Api
            {
                GetInstanceRaw = (delegate* unmanaged<byte*, byte*, int, int*, nint>)gi,
                Normalize = (delegate* unmanaged<nint, char*, int, char*, int, int*, int>)nz,
            }
            : null;
    }
}
