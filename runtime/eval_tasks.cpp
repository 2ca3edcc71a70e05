// SPDX-License-Identifier: MIT
// The needle and co-reference generators of runtime/eval_tasks.h. Every sentence below is written for this project.
// Randomness is splitmix64 with plain modulo draws, so samples are the same on every standard library.
#include "runtime/eval_tasks.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <set>

#include "runtime/status.h"

namespace butler {

namespace {

class Rng {
public:
    explicit Rng(uint64_t seed) : state_(seed) {}
    uint64_t next() {
        uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
        z          = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z          = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        return z ^ (z >> 31);
    }
    size_t below(size_t n) { return size_t(next() % n); }
    double unit() { return double(next() >> 11) / double(uint64_t(1) << 53); }

private:
    uint64_t state_;
};

// Invented names: three syllables from lists that rarely make English words ("Zirameld", "Vothrena").
std::string make_name(Rng& rng) {
    static constexpr std::array<const char*, 18> onset{"b", "br", "d", "dr", "f", "gl", "k", "kr", "l",
                                                       "m", "n",  "p", "r",  "s", "th", "v",  "z", "zh"};
    static constexpr std::array<const char*, 8> vowel{"a", "e", "i", "o", "u", "ae", "ia", "ou"};
    static constexpr std::array<const char*, 6> coda{"", "n", "r", "l", "x", "th"};
    std::string s;
    for (int syl = 0; syl < 3; ++syl) {
        s += onset[rng.below(onset.size())];
        s += vowel[rng.below(vowel.size())];
        if (syl == 2 || rng.below(3) == 0) s += coda[rng.below(coda.size())];
    }
    s[0] = char(s[0] - 'a' + 'A');
    return s;
}

struct Place {
    const char* intro;    // ends with "The place is:"
    const char* tieback;  // the question that points back at it
};

constexpr std::array<Place, 30> kPlaces{{
    {"Far to the north lies a valley where the wind never stops blowing. The place is:",
     "Which place is the valley where the wind never stops blowing"},
    {"There is a harbor town whose lighthouse is painted green. The place is:",
     "Which place is the harbor town with the green lighthouse"},
    {"Beyond the salt flats stands a village built entirely of white stone. The place is:",
     "Which place is the village built of white stone"},
    {"In the eastern hills there is a monastery famous for its bells. The place is:",
     "Which place is the monastery famous for its bells"},
    {"A small island in the southern sea grows nothing but lemons. The place is:",
     "Which place is the island that grows only lemons"},
    {"On the edge of the great forest is a town where every roof is red. The place is:",
     "Which place is the town where every roof is red"},
    {"High in the mountains sits a fortress that has never been captured. The place is:",
     "Which place is the mountain fortress that was never captured"},
    {"Along the river delta there is a market that opens only at night. The place is:",
     "Which place has the market that opens only at night"},
    {"In the desert there is an oasis guarded by ancient statues. The place is:",
     "Which place is the oasis guarded by statues"},
    {"Near the frozen lake stands a city whose bridges are made of glass. The place is:",
     "Which place is the city with bridges of glass"},
    {"Deep in the marshes lies a hamlet where the people keep herons. The place is:",
     "Which place is the hamlet where people keep herons"},
    {"On a plateau above the clouds there is an observatory with a silver dome. The place is:",
     "Which place is the observatory with the silver dome"},
    {"By the western cliffs there is a port known for its rope makers. The place is:",
     "Which place is the port known for its rope makers"},
    {"In the middle of the plains stands a single tower of black brick. The place is:",
     "Which place is the tower of black brick on the plains"},
    {"There is a mining town where the streets glitter with copper dust. The place is:",
     "Which place is the mining town with copper dust in its streets"},
    {"Across the bay lies a garden city where no cart may enter. The place is:",
     "Which place is the garden city where carts may not enter"},
    {"In the old kingdom there is a library carved into a hillside. The place is:",
     "Which place has the library carved into a hillside"},
    {"Between two rivers lies a farming village that celebrates the first frost. The place is:",
     "Which place is the village that celebrates the first frost"},
    {"At the end of the long road there is an inn that has served travelers for six centuries. The place is:",
     "Which place is the inn that has served travelers for six centuries"},
    {"On the volcanic coast there is a spa town with warm green pools. The place is:",
     "Which place is the spa town with warm green pools"},
    {"In the pine woods there is a workshop where violins are made from fallen trees. The place is:",
     "Which place is the workshop that makes violins from fallen trees"},
    {"Under the northern lights lies a fishing camp that never sleeps in winter. The place is:",
     "Which place is the fishing camp that never sleeps in winter"},
    {"In the terraced hills there is a tea estate run by seven sisters. The place is:",
     "Which place is the tea estate run by seven sisters"},
    {"At the mouth of the canyon stands a trading post painted yellow. The place is:",
     "Which place is the yellow trading post at the canyon mouth"},
    {"On a quiet lake there is a floating school for young sailors. The place is:",
     "Which place is the floating school for young sailors"},
    {"In the southern jungle there is a temple covered in blue tiles. The place is:",
     "Which place is the temple covered in blue tiles"},
    {"Past the iron gate lies a town where clocks are forbidden. The place is:",
     "Which place is the town where clocks are forbidden"},
    {"On the windy moor stands a mill that grinds only barley. The place is:",
     "Which place is the mill that grinds only barley"},
    {"Near the border there is a stable that breeds grey horses. The place is:",
     "Which place is the stable that breeds grey horses"},
    {"In the river gorge there is a village reached only by a rope bridge. The place is:",
     "Which place is the village reached only by a rope bridge"},
}};

constexpr std::array<const char*, 30> kPhilosophy{
    "A person who listens carefully learns more than one who speaks often",
    "Patience is the quiet partner of every lasting achievement",
    "What we repeat each day slowly becomes who we are",
    "A question honestly asked is worth more than an answer cleverly given",
    "Kindness costs little and returns more than it spends",
    "The mind grows by meeting ideas it does not yet agree with",
    "No one is wise about everything, but everyone is wise about something",
    "Courage is often just a decision made before fear arrives",
    "Simplicity is harder to build than complexity",
    "A promise kept is a small bridge between two people",
    "The best teachers know how much they still have to learn",
    "Rest is part of the work, not a pause from it",
    "Gratitude turns what we have into enough",
    "Curiosity keeps the mind young long after the body ages",
    "Mistakes are the tuition we pay for experience",
    "Silence can say what words cannot",
    "A good habit is a gift from the past self to the future self",
    "Trust is built slowly and spent quickly",
    "Every expert was once a beginner who did not give up",
    "Understanding another person begins with setting aside our own story",
    "The present moment is the only place where anything can be done",
    "A calm mind sees further than a hurried one",
    "Generosity is measured by what remains after giving",
    "Humility makes room for learning",
    "Change is easier to accept when it is chosen",
    "Small steps in the right direction beat large steps in the wrong one",
    "Honesty is simple to describe and difficult to practice",
    "The value of time is known best by those who have little of it",
    "A shared burden weighs less on each shoulder",
    "Wonder is the beginning of every science",
};

constexpr std::array<const char*, 30> kFood{
    "The local bread is baked with rosemary and sea salt",
    "Their favorite soup is made from roasted pumpkin and ginger",
    "People there eat smoked fish with sour cream for breakfast",
    "The most famous dish is a stew of lentils and dried apricots",
    "Every festival ends with honey cakes dusted with cinnamon",
    "The cooks prefer goat cheese wrapped in grape leaves",
    "A common lunch is rice cooked with saffron and peas",
    "Children love the sweet dumplings filled with plum jam",
    "The evening meal usually includes grilled corn and black beans",
    "Their dark rye bread is served with butter and radishes",
    "Fresh mint tea is offered to every guest who arrives",
    "The region is known for pickled cabbage and spiced sausages",
    "On cold days they drink hot cider with cloves",
    "The traditional pie is filled with mushrooms and onions",
    "Flatbread with olive oil and thyme is eaten at every meal",
    "The fishermen make a broth of mussels, garlic and white wine",
    "Sweet potatoes are roasted in the ashes of the evening fire",
    "The bakers are proud of their almond biscuits",
    "A salad of cucumbers, yogurt and dill is served in summer",
    "Their porridge is cooked with oats, milk and chestnuts",
    "Roasted chestnuts are sold on every street corner in autumn",
    "The favorite dessert is a custard flavored with orange peel",
    "Noodles with sesame and scallions are a common supper",
    "The farmers eat boiled eggs with coarse mustard at noon",
    "A thick bean soup with smoked pork is served on holidays",
    "The markets sell dried figs stuffed with walnuts",
    "Buttermilk pancakes with berries are a weekend treat",
    "The inns serve lamb slowly cooked with prunes",
    "Their cheese is aged in caves for two full years",
    "Warm barley bread with honey is eaten before bed",
};

// Simple arithmetic statements, generated: "A baker makes 14 loaves each day, so in 6 days he makes 84 loaves".
std::string make_math(Rng& rng) {
    const int a = 2 + int(rng.below(18)), b = 2 + int(rng.below(9));
    switch (rng.below(4)) {
    case 0: return fmt::format("A baker makes {} loaves each day, so in {} days he makes {} loaves", a, b, a * b);
    case 1: return fmt::format("If a basket holds {} apples and {} more are added, it holds {} apples", a, b, a + b);
    case 2:
        return fmt::format("A rope of {} meters is cut into pieces of {} meters, which gives {} whole pieces", a * b, b,
                           a);
    default:
        return fmt::format("A shepherd has {} sheep and sells {}, so {} sheep remain", a + b, b, a);
    }
}

bool sentence_end(const std::string& t, size_t i) {
    return (t[i] == '.' || t[i] == '!' || t[i] == '?') && i + 1 < t.size() &&
           (t[i + 1] == ' ' || t[i + 1] == '\n' || t[i + 1] == '\t');
}

}  // namespace

std::vector<TaskSample> make_needle_samples(const std::string& haystack, int n_samples, size_t doc_chars,
                                            double min_depth, double max_depth, uint64_t seed) {
    if (!(min_depth >= 0 && min_depth <= max_depth && max_depth <= 1))
        fail(Status::InvalidArg, "needle depth range [{}, {}] is not within [0, 1]", min_depth, max_depth);
    // Sentence starts: the first character after a sentence end and its whitespace.
    std::vector<size_t> starts{0};
    for (size_t i = 0; i + 1 < haystack.size(); ++i) {
        if (!sentence_end(haystack, i)) continue;
        size_t j = i + 1;
        while (j < haystack.size() && (haystack[j] == ' ' || haystack[j] == '\n' || haystack[j] == '\t')) ++j;
        if (j < haystack.size()) starts.push_back(j);
    }
    starts.push_back(haystack.size());
    // The last start from which doc_chars of whole sentences still fit.
    size_t last = 0;
    while (last + 1 < starts.size() && haystack.size() - starts[last + 1] >= doc_chars) ++last;
    if (haystack.size() < doc_chars || haystack.size() - starts[last] < doc_chars)
        fail(Status::InvalidArg, "the needle haystack has {} characters; {} are needed", haystack.size(), doc_chars);
    Rng rng(seed ^ 0x6e6565646c65ull);
    std::set<std::string> used;
    std::vector<TaskSample> out;
    for (int s = 0; s < n_samples; ++s) {
        const size_t first = rng.below(last + 1);
        const size_t begin = starts[first];
        size_t end_idx     = first + 1;
        while (starts[end_idx] - begin < doc_chars) ++end_idx;  // whole sentences up to doc_chars (one past it)
        std::string doc   = haystack.substr(begin, starts[end_idx] - begin);
        const size_t want = size_t((min_depth + (max_depth - min_depth) * rng.unit()) * double(doc.size()));
        // The needle goes at the first sentence start at or after the depth.
        size_t at = doc.size();
        for (size_t k = first; k < end_idx; ++k)
            if (starts[k] - begin >= want) {
                at = starts[k] - begin;
                break;
            }
        std::string name;
        do name = make_name(rng);
        while (!used.insert(name).second);
        const std::string code = fmt::format("{:05d}", 10000 + int(rng.below(90000)));
        const std::string needle = fmt::format("The secret code of {} is {}. ", name, code);
        doc.insert(at, needle);
        TaskSample t;
        t.document      = std::move(doc);
        t.question      = fmt::format("\n\nQuestion: What is the secret code of {}?\nAnswer: The secret code of {} is",
                                      name, name);
        t.answer        = " " + code;
        t.target_offset = at;
        out.push_back(std::move(t));
    }
    return out;
}

std::vector<TaskSample> make_coref_samples(int n_samples, int n_blocks, uint64_t seed) {
    if (n_blocks < 1 || n_blocks > int(kPlaces.size()))
        fail(Status::InvalidArg, "co-reference samples take 1 to {} blocks (got {})", kPlaces.size(), n_blocks);
    Rng rng(seed ^ 0x636f726566ull);
    std::vector<TaskSample> out;
    for (int s = 0; s < n_samples; ++s) {
        std::vector<size_t> places(kPlaces.size());
        for (size_t i = 0; i < places.size(); ++i) places[i] = i;
        for (size_t i = places.size() - 1; i > 0; --i) std::swap(places[i], places[rng.below(i + 1)]);  // Fisher-Yates
        std::set<std::string> names;
        std::string doc, first_name;
        for (int b = 0; b < n_blocks; ++b) {
            std::string name;
            do name = make_name(rng);
            while (!names.insert(name).second);
            if (b == 0) first_name = name;
            if (!doc.empty()) doc += "\n";
            doc += fmt::format("{} {}. {}. {}. {}.", kPlaces[places[size_t(b)]].intro, name,
                               kPhilosophy[rng.below(kPhilosophy.size())], kFood[rng.below(kFood.size())],
                               make_math(rng));
        }
        TaskSample t;
        t.document      = std::move(doc);
        t.question      = fmt::format("\n{}? The place is:", kPlaces[places[0]].tieback);
        t.answer        = " " + first_name;
        t.target_offset = 0;
        out.push_back(std::move(t));
    }
    return out;
}

}  // namespace butler
