#pragma once
// Reading one HTTP message (a request on the server, a response on the outbound client) from what a
// buffer already holds, and from the stream only for the rest.
//
// Beast's async_read, given a buffer that already holds the whole message (the usual case: the
// read before it got all of it), still completes through the executor: a handler queued on the
// io_context, a hop through the connection's strand, and often a wake-up of another thread. Parsing
// the buffered bytes here first takes none of that.
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/read_size.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/parser.hpp>

namespace paymux::http {

// Reads one message into `parser`. `before_read()` is called once, before the first read from the
// stream (none when the buffer held the whole message): set the stream's time limit there.
// Errors: the parser's (body_limit, header_limit, bad_* for a malformed message, partial_message
// when the peer closed midway), end_of_stream when it closed before sending a byte, or the
// read's (timeout, operation_aborted, connection_reset...). Bytes after the message stay in `buffer`.
template <class Stream, class Parser, class BeforeRead>
boost::asio::awaitable<boost::system::error_code> read_message(Stream& stream, boost::beast::flat_buffer& buffer,
                                                               Parser& parser, BeforeRead before_read) {
  namespace bhttp = boost::beast::http;
  parser.eager(true);  // the header and the body in one put(), as far as the bytes go
  bool read_before = false;
  for (;;) {
    boost::system::error_code ec;
    if (buffer.size() > 0) {
      const auto used = parser.put(buffer.data(), ec);
      buffer.consume(used);
      if (ec && ec != bhttp::error::need_more) co_return ec;
      if (parser.is_done()) co_return boost::system::error_code{};
      if (!ec && used > 0) continue;  // more may parse from what is left
    }
    if (!read_before) {
      before_read();
      read_before = true;
    }
    auto [rec, n] = co_await stream.async_read_some(buffer.prepare(boost::beast::read_size(buffer, 65536)),
                                                    boost::asio::as_tuple(boost::asio::use_awaitable));
    if (rec == boost::asio::error::eof) {
      if (!parser.got_some()) co_return bhttp::error::end_of_stream;
      parser.put_eof(ec);  // completes a message that ends at the close; partial_message otherwise
      co_return ec;
    }
    if (rec) co_return rec;
    buffer.commit(n);
  }
}

}  // namespace paymux::http
