#pragma once
// Large JSON texts (an event's payload, an idempotency key's stored response) kept compressed in the
// SQLite store.
//
// A payment's JSON is about 0.8-1 KB. On the store's 2 KiB pages only one such row fits, so every
// event and every stored response took a page of its own, and each commit wrote those pages in
// full to the WAL and later to the database file. Compressed (zstd) against a dictionary of the
// JSON's usual keys and values it is about a third of that, and three or more rows share a page.
//
// A packed value is a BLOB: one format byte, the text's length (4 bytes, little-endian), then a
// zstd frame made with the dictionary that the format byte names. Values stored as TEXT (rows
// written before packing, or texts that would not get smaller) are read as they are. A format byte
// and its dictionary never change once released: a new dictionary takes a new format byte.
#include <string>
#include <string_view>

namespace paymux::store::sqlite {

// A text as it is bound to a statement: packed when that is smaller, else the text itself.
struct StoredText {
  std::string bytes;
  bool packed = false;
};

// Packs `text` when that makes it smaller (texts under 64 bytes are kept as they are).
StoredText pack_text(std::string_view text);

// The text of a packed value. Throws std::runtime_error when the bytes are not a value pack_text
// made (an unknown format byte, damaged data, a length that does not match).
std::string unpack_text(std::string_view packed);

}  // namespace paymux::store::sqlite
