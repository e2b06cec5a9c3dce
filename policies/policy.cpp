// Parameter values of policies (typed access, parsing from config text, defaults) and the lookup
// of policies by name. The registry table itself is in registry.cpp.
#include "policies/policy.h"

#include "evaluator/base/error.h"
#include "evaluator/base/number_text.h"

#include <algorithm>
#include <cctype>

namespace mps {

namespace {

const char* kind_name(ParamSpec::Kind kind) {
    switch (kind) {
    case ParamSpec::Kind::integer: return "an integer";
    case ParamSpec::Kind::real: return "a real number";
    case ParamSpec::Kind::boolean: return "a boolean";
    case ParamSpec::Kind::text: return "a text";
    }
    return "a value";
}

const char* kind_name(const ParamValue& value) {
    static constexpr ParamSpec::Kind kinds[] = {ParamSpec::Kind::integer, ParamSpec::Kind::real,
                                                ParamSpec::Kind::boolean, ParamSpec::Kind::text};
    return kind_name(kinds[value.index()]);
}

std::string trimmed(const std::string& text) {
    const char* space = " \t\r\n";
    const size_t begin = text.find_first_not_of(space);
    if (begin == std::string::npos) return {};
    return text.substr(begin, text.find_last_not_of(space) - begin + 1);
}

std::string lowercase(std::string text) {
    for (char& c : text) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return text;
}

// "an integer in [1, 16]", "a real number >= 0", "a boolean (true or false)", "one of kl, sqnr".
std::string expectation(const ParamSpec& spec) {
    if (spec.kind == ParamSpec::Kind::boolean) return "a boolean (true/false, yes/no)";
    if (spec.kind == ParamSpec::Kind::text) {
        if (spec.choices.empty()) return "a text";
        std::string list;
        for (const std::string& choice : spec.choices) list += (list.empty() ? "" : ", ") + choice;
        return "one of " + list;
    }
    std::string text = kind_name(spec.kind);
    if (spec.min && spec.max)
        text += " in [" + shortest_decimal(*spec.min) + ", " + shortest_decimal(*spec.max) + "]";
    else if (spec.min)
        text += " >= " + shortest_decimal(*spec.min);
    else if (spec.max)
        text += " <= " + shortest_decimal(*spec.max);
    return text;
}

[[noreturn]] void bad_value(const ParamSpec& spec, const std::string& text) {
    throw Error("policy parameter '" + spec.name + "': expected " + expectation(spec) + ", got '" +
                text + "'");
}

bool in_range(const ParamSpec& spec, double value) {
    return (!spec.min || value >= *spec.min) && (!spec.max || value <= *spec.max);
}

} // namespace

namespace {

template <typename T>
const T& typed(const std::map<std::string, ParamValue>& values, const std::string& name,
               ParamSpec::Kind kind) {
    const auto it = values.find(name);
    if (it == values.end())
        throw Error("policy parameter '" + name +
                    "' is not set; fill the parameters with default_params() first");
    if (const T* value = std::get_if<T>(&it->second)) return *value;
    throw Error(std::string("policy parameter '") + name + "' is " + kind_name(it->second) +
                ", not " + kind_name(kind) + "; read it with the accessor of its kind");
}

} // namespace

int64_t ParamValues::integer(const std::string& name) const {
    return typed<int64_t>(values_, name, ParamSpec::Kind::integer);
}

double ParamValues::real(const std::string& name) const {
    return typed<double>(values_, name, ParamSpec::Kind::real);
}

bool ParamValues::boolean(const std::string& name) const {
    return typed<bool>(values_, name, ParamSpec::Kind::boolean);
}

const std::string& ParamValues::text(const std::string& name) const {
    return typed<std::string>(values_, name, ParamSpec::Kind::text);
}

ParamValue parse_param(const ParamSpec& spec, const std::string& text) {
    const std::string value = trimmed(text);
    switch (spec.kind) {
    case ParamSpec::Kind::integer: {
        const std::optional<int64_t> number = parse_number<int64_t>(value);
        if (!number || !in_range(spec, static_cast<double>(*number))) bad_value(spec, text);
        return *number;
    }
    case ParamSpec::Kind::real: {
        const std::optional<double> number = parse_number<double>(value);
        if (!number || !in_range(spec, *number)) bad_value(spec, text);
        return *number;
    }
    case ParamSpec::Kind::boolean: {
        // YAML 1.1 spellings, which yaml-cpp's as<bool>() accepts too.
        const std::string word = lowercase(value);
        if (word == "true" || word == "yes") return true;
        if (word == "false" || word == "no") return false;
        bad_value(spec, text);
    }
    case ParamSpec::Kind::text:
        if (!spec.choices.empty() &&
            std::find(spec.choices.begin(), spec.choices.end(), value) == spec.choices.end())
            bad_value(spec, text);
        return value;
    }
    bad_value(spec, text);
}

ParamValues default_params(std::span<const ParamSpec> specs) {
    std::map<std::string, ParamValue> values;
    for (const ParamSpec& spec : specs) values[spec.name] = parse_param(spec, spec.default_value);
    return ParamValues(std::move(values));
}

std::string param_to_string(const ParamValue& value) {
    if (const auto* i = std::get_if<int64_t>(&value)) return std::to_string(*i);
    if (const auto* d = std::get_if<double>(&value)) return shortest_decimal(*d);
    if (const auto* b = std::get_if<bool>(&value)) return *b ? "true" : "false";
    return std::get<std::string>(value);
}

const PolicyInfo* find_policy(const std::string& name) {
    for (const PolicyInfo& info : registered_policies())
        if (info.name == name) return &info;
    return nullptr;
}

std::unique_ptr<SearchPolicy> make_policy(const std::string& name, const PolicyContext& context) {
    const PolicyInfo* info = find_policy(name);
    if (!info) {
        std::string names;
        for (const PolicyInfo& known : registered_policies())
            names += (names.empty() ? "" : ", ") + known.name;
        throw Error("unknown policy '" + name + "'; registered policies: " + names);
    }
    if (!context.graph)
        throw Error("policy '" + name + "' needs a graph; set PolicyContext::graph");
    // Parameters the caller left out take their defaults, so that a policy can rely on every
    // declared parameter being present; a parameter the policy does not declare is a mistake.
    std::map<std::string, ParamValue> values = default_params(info->params).all();
    for (const auto& [key, value] : context.params.all()) {
        const auto spec = std::find_if(info->params.begin(), info->params.end(),
                                       [&key = key](const ParamSpec& s) {
                                           return s.name == key; // (init-capture: clang < 16)
                                       });
        if (spec == info->params.end())
            throw Error("policy '" + name + "' has no parameter '" + key +
                        "'; remove it from the policy's parameters");
        if (values.at(key).index() != value.index())
            throw Error("policy parameter '" + key + "' is " + kind_name(value) + ", expected " +
                        kind_name(spec->kind) + "; parse it with parse_param()");
        values[key] = value;
    }
    PolicyContext filled = context;
    filled.params = ParamValues(std::move(values));
    return info->make(filled);
}

namespace {

ParamSpec make_spec(std::string name, ParamSpec::Kind kind, std::string default_value,
                    std::string help) {
    ParamSpec spec;
    spec.name = std::move(name);
    spec.kind = kind;
    spec.default_value = std::move(default_value);
    spec.help = std::move(help);
    return spec;
}

} // namespace

ParamSpec integer_param(std::string name, std::string default_value, double min, double max,
                        std::string help) {
    ParamSpec spec = make_spec(std::move(name), ParamSpec::Kind::integer, std::move(default_value),
                               std::move(help));
    spec.min = min;
    spec.max = max;
    return spec;
}

ParamSpec real_param(std::string name, std::string default_value, double min, double max,
                     std::string help) {
    ParamSpec spec = make_spec(std::move(name), ParamSpec::Kind::real, std::move(default_value),
                               std::move(help));
    spec.min = min;
    spec.max = max;
    return spec;
}

ParamSpec boolean_param(std::string name, std::string default_value, std::string help) {
    return make_spec(std::move(name), ParamSpec::Kind::boolean, std::move(default_value),
                     std::move(help));
}

ParamSpec text_param(std::string name, std::string default_value,
                     std::vector<std::string> choices, std::string help) {
    ParamSpec spec = make_spec(std::move(name), ParamSpec::Kind::text, std::move(default_value),
                               std::move(help));
    spec.choices = std::move(choices);
    return spec;
}

} // namespace mps
