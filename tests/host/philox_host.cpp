// philox_host.cpp: runs kernels/philox.cuh as host C++ (through kernels/host_shim.h) and prints
// its words, uniforms, normals and Poisson counts as plain text, so tests/test_kernels_host.py
// can compare them with gpusim/model/rng.py without a GPU.
//
// Build: g++ -O2 -std=c++17 -I kernels tests/host/philox_host.cpp -o philox_host
//
// One command per line on stdin (or one command as the arguments). Each command prints exactly
// one output line of space-separated values; rows of a step come slot-major, as in
// rng.step_words: the value for (row r, path path0 + j) is item r * n_paths + j.
// Integers are decimal, uint32 words hex; floats are printed as their bit patterns in hex
// (8 digits for float32, 16 for float64) so comparisons can be bitwise.
//
//   kat C0 C1 C2 C3 K0 K1                       philox4x32_10 on one counter/key (hex words)
//   words SEED PATH0 N STEP N_SLOTS             raw slot words (hex)
//   u01_f32 W...  |  u01_f64 W...               uniforms of the given hex words
//   uniform_f32 SEED PATH0 N STEP N_SLOTS       uniforms of every slot (also uniform_f64)
//   normal_f32 SEED PATH0 N STEP N_PAIRS        Box-Muller on slots (2i, 2i+1); row 2i = cosine
//                                               draw, row 2i+1 = sine draw (also normal_f64)
//   poisson_f32 SEED PATH0 N STEP SLOT F0..F15  counts from one slot's uniforms against the
//                                               float64 CDF table F (hex bits) (also poisson_f64)
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "host_shim.h"
#include "philox.cuh"

namespace {

using u64 = unsigned long long;

struct Args {
    std::vector<std::string> tokens;
    std::size_t next = 1;  // tokens[0] is the command

    const std::string& take() {
        if (next >= tokens.size()) throw std::runtime_error("missing argument to " + tokens[0]);
        return tokens[next++];
    }
    u64 dec() { return std::stoull(take(), nullptr, 10); }
    unsigned int u32() {
        const u64 v = dec();
        if (v > 0xFFFFFFFFull) throw std::runtime_error("value above 2^32 - 1 in " + tokens[0]);
        return static_cast<unsigned int>(v);
    }
    unsigned int hex32() {
        const u64 v = std::stoull(take(), nullptr, 16);
        if (v > 0xFFFFFFFFull) throw std::runtime_error("word above 2^32 - 1 in " + tokens[0]);
        return static_cast<unsigned int>(v);
    }
    double hex_f64() {
        const u64 bits = std::stoull(take(), nullptr, 16);
        double d;
        std::memcpy(&d, &bits, sizeof d);
        return d;
    }
    bool done() const { return next >= tokens.size(); }
    void finish() const {
        if (!done()) throw std::runtime_error("too many arguments to " + tokens[0]);
    }
};

void put_word(std::ostringstream& out, unsigned int w) {
    char buf[16];
    std::snprintf(buf, sizeof buf, "%08x", w);
    out << buf << ' ';
}

void put(std::ostringstream& out, float f) {
    std::uint32_t bits;
    std::memcpy(&bits, &f, sizeof bits);
    put_word(out, bits);
}

void put(std::ostringstream& out, double d) {
    std::uint64_t bits;
    std::memcpy(&bits, &d, sizeof bits);
    char buf[24];
    std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(bits));
    out << buf << ' ';
}

// A step's coordinates: SEED PATH0 N STEP, then the row count.
struct Step {
    u64 seed, path0;
    unsigned int n, step;
};

Step read_step(Args& a) {
    Step s{};
    s.seed = a.dec();
    s.path0 = a.dec();
    s.n = a.u32();
    s.step = a.u32();
    return s;
}

// Rows (slots) r = 0..n_rows-1 for every path of the step, slot-major.
template <typename F>
void for_slots(const Step& s, unsigned int n_rows, F&& f) {
    for (unsigned int r = 0; r < n_rows; ++r)
        for (unsigned int j = 0; j < s.n; ++j) f(gpusim::philox_slot(s.seed, s.path0 + j, s.step, r));
}

template <typename T>
void normals(const Step& s, unsigned int n_pairs, std::ostringstream& out) {
    std::vector<T> z(static_cast<std::size_t>(2) * n_pairs * s.n);
    for (unsigned int i = 0; i < n_pairs; ++i) {
        for (unsigned int j = 0; j < s.n; ++j) {
            const T u0 = gpusim::u01<T>(gpusim::philox_slot(s.seed, s.path0 + j, s.step, 2 * i));
            const T u1 = gpusim::u01<T>(gpusim::philox_slot(s.seed, s.path0 + j, s.step, 2 * i + 1));
            gpusim::box_muller(u0, u1, z[(2 * i) * s.n + j], z[(2 * i + 1) * s.n + j]);
        }
    }
    for (const T v : z) put(out, v);
}

template <typename T>
void poisson(Args& a, std::ostringstream& out) {
    const Step s = read_step(a);
    const unsigned int slot = a.u32();
    double cdf[gpusim::cfg::POISSON_CAP];
    for (double& f : cdf) f = a.hex_f64();
    a.finish();
    for (unsigned int j = 0; j < s.n; ++j) {
        const T u = gpusim::u01<T>(gpusim::philox_slot(s.seed, s.path0 + j, s.step, slot));
        out << gpusim::poisson_inverse_cdf(u, cdf) << ' ';
    }
}

std::string run(const std::vector<std::string>& tokens) {
    Args a{tokens};
    const std::string& cmd = tokens[0];
    std::ostringstream out;
    if (cmd == "kat") {
        uint4 ctr;
        ctr.x = a.hex32();
        ctr.y = a.hex32();
        ctr.z = a.hex32();
        ctr.w = a.hex32();
        uint2 key;
        key.x = a.hex32();
        key.y = a.hex32();
        a.finish();
        const uint4 r = gpusim::philox4x32_10(ctr, key);
        for (const unsigned int w : {r.x, r.y, r.z, r.w}) put_word(out, w);
    } else if (cmd == "words" || cmd == "uniform_f32" || cmd == "uniform_f64") {
        const Step s = read_step(a);
        const unsigned int n_slots = a.u32();
        a.finish();
        for_slots(s, n_slots, [&](unsigned int w) {
            if (cmd == "words") put_word(out, w);
            else if (cmd == "uniform_f32") put(out, gpusim::u01_f32(w));
            else put(out, gpusim::u01_f64(w));
        });
    } else if (cmd == "u01_f32" || cmd == "u01_f64") {
        while (!a.done()) {
            const unsigned int w = a.hex32();
            if (cmd == "u01_f32") put(out, gpusim::u01_f32(w));
            else put(out, gpusim::u01_f64(w));
        }
    } else if (cmd == "normal_f32" || cmd == "normal_f64") {
        const Step s = read_step(a);
        const unsigned int n_pairs = a.u32();
        a.finish();
        if (cmd == "normal_f32") normals<float>(s, n_pairs, out);
        else normals<double>(s, n_pairs, out);
    } else if (cmd == "poisson_f32") {
        poisson<float>(a, out);
    } else if (cmd == "poisson_f64") {
        poisson<double>(a, out);
    } else {
        throw std::runtime_error("unknown command " + cmd);
    }
    std::string line = out.str();
    if (!line.empty()) line.pop_back();  // trailing space
    return line;
}

std::vector<std::string> split(const std::string& line) {
    std::istringstream in(line);
    std::vector<std::string> tokens;
    for (std::string t; in >> t;) tokens.push_back(t);
    return tokens;
}

}  // namespace

int main(int argc, char** argv) {
    try {
        if (argc > 1) {
            std::cout << run(std::vector<std::string>(argv + 1, argv + argc)) << '\n';
            return 0;
        }
        for (std::string line; std::getline(std::cin, line);) {
            const std::vector<std::string> tokens = split(line);
            if (tokens.empty() || tokens[0][0] == '#') continue;
            std::cout << run(tokens) << '\n';
        }
    } catch (const std::exception& e) {
        std::cerr << "philox_host: error: " << e.what() << '\n';
        return 2;
    }
    return 0;
}
