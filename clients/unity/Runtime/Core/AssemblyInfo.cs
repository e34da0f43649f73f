// The test program checks the frame reader, which is internal, against a
// reading through the public JSON tree, and measures what it allocates.
[assembly: System.Runtime.CompilerServices.InternalsVisibleTo("HeraldTests")]
