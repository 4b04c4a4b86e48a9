#:property PublishAot=false
// Copies the embedded resource `_framework/blazor.web.js` out of an ASP.NET Core
// Microsoft.AspNetCore.Components.Endpoints.dll (from the 9.0 runtime pack) into a file.
// The Web project's build runs this; see docs/decisions/002-blazor-script.md.
// Usage: dotnet run --file extract.cs -- <Components.Endpoints.dll> <output file>
using System.Reflection.Metadata;
using System.Reflection.PortableExecutable;

const string ResourceName = "_framework/blazor.web.js";

if (args.Length != 2)
{
    Console.Error.WriteLine("usage: extract.cs <Microsoft.AspNetCore.Components.Endpoints.dll> <output file>");
    return 2;
}

using var pe = new PEReader(File.OpenRead(args[0]));
var metadata = pe.GetMetadataReader();
var resources = pe.PEHeaders.CorHeader?.ResourcesDirectory
    ?? throw new InvalidOperationException($"{args[0]} has no CLR header.");

foreach (var handle in metadata.ManifestResources)
{
    var resource = metadata.GetManifestResource(handle);
    if (!resource.Implementation.IsNil || metadata.GetString(resource.Name) != ResourceName) continue;

    // An embedded resource is a 4-byte little-endian length followed by the bytes, at Offset in the resources blob.
    var blob = pe.GetSectionData(resources.RelativeVirtualAddress).GetReader((int)resource.Offset, resources.Size - (int)resource.Offset);
    var bytes = blob.ReadBytes(blob.ReadInt32());
    Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(args[1]))!);
    File.WriteAllBytes(args[1], bytes);
    Console.WriteLine($"blazorjs: wrote {bytes.Length} bytes to {args[1]}");
    return 0;
}

Console.Error.WriteLine($"blazorjs: {args[0]} has no embedded resource '{ResourceName}'.");
return 1;
