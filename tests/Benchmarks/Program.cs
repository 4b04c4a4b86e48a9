// Loom benchmarks: a console program that prints ratios measured side by side in one run.
// Usage: dotnet run -c Release --project tests/Benchmarks -- <suite>
Console.WriteLine("usage: dotnet run -c Release --project tests/Benchmarks -- <suite>");
return 0;
