// Added to FerretDB's SQLite backend by the Doorstep build (see ../patches.json).

package sqlite

import (
	"context"
	"fmt"
	"regexp"
	"strings"

	"github.com/FerretDB/FerretDB/internal/backends/sqlite/metadata"
	"github.com/FerretDB/FerretDB/internal/handler/sjson"
	"github.com/FerretDB/FerretDB/internal/types"
	"github.com/FerretDB/FerretDB/internal/util/fsql"
	"github.com/FerretDB/FerretDB/internal/util/must"
)

var (
	// A field name used as is in a JSON path.
	plainField = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,63}$`)

	// A string whose JSON text is the same however it is encoded (no escapes), so
	// comparing SQLite's rendering of a stored value with FerretDB's is exact.
	plainString = regexp.MustCompile(`^[A-Za-z0-9 :_.@+/=-]{0,200}$`)

	// ...and whose JSON text orders as the string does: every character sorts after
	// the closing quote (a space would not).
	orderedString = regexp.MustCompile(`^[A-Za-z0-9:_.@+/=-]{0,200}$`)

	comparisons = map[string]string{"$lt": "<", "$lte": "<=", "$gt": ">", "$gte": ">="}
)

// doorstepWhere pushes filters down to SQLite, for _id and for every field some index of
// the collection holds: equality with a string and $lt/$lte/$gt/$gte against a string,
// each on the expression the field's index is built on (`_ferretdb_sjson->'_id'`,
// `_ferretdb_sjson->>'field'`), so SQLite searches the index instead of FerretDB
// decoding and filtering every document.
//
// The full filter is still applied to what comes back (FilterIterator). exact says that
// the conditions select precisely what the filter does, so ordering and limiting may be
// pushed down too (doorstepOrderBy). That holds while an indexed field holds no arrays
// (MongoDB matches {"tags": "x"} against ["x", "y"]; SQLite would not): Doorstep's
// indexed fields hold scalars.
func doorstepWhere(meta *metadata.Collection, filter *types.Document) (string, []any, bool) {
	if filter == nil || filter.Len() == 0 {
		return "", nil, true
	}

	indexed := map[string]bool{"_id": true}
	for _, index := range meta.Settings.Indexes {
		for _, key := range index.Key {
			indexed[key.Field] = true
		}
	}

	var conditions []string
	var args []any
	exact := true

	for _, k := range filter.Keys() {
		if !indexed[k] || !plainField.MatchString(k) {
			exact = false
			continue
		}

		// _id as its index has it (JSON text, metadata.IDColumn); any other field as its
		// value in SQL (->>), as the indexes on plain fields are built (registry.go patch).
		// Compared with a plain string, ->> is exact: a number is never equal to text, and
		// an object's or array's JSON text never matches plainString.
		column := fmt.Sprintf(`%s->>'%s'`, metadata.DefaultColumn, k)
		value := func(s string) any { return s }
		if k == "_id" {
			column = metadata.IDColumn
			value = func(s string) any { return string(must.NotFail(sjson.MarshalSingleValue(s))) }
		}

		switch v := must.NotFail(filter.Get(k)).(type) {
		case string:
			if !plainString.MatchString(v) {
				exact = false
				continue
			}
			conditions = append(conditions, column+` = ?`)
			args = append(args, value(v))

		case types.ObjectID:
			if k != "_id" {
				exact = false
				continue
			}
			conditions = append(conditions, column+` = ?`)
			args = append(args, string(must.NotFail(sjson.MarshalSingleValue(v))))

		case *types.Document:
			for _, op := range v.Keys() {
				s, isString := must.NotFail(v.Get(op)).(string)
				sign, isComparison := comparisons[op]
				if !isString || !isComparison || !orderedString.MatchString(s) {
					exact = false
					continue
				}
				conditions = append(conditions, fmt.Sprintf(`%s %s ?`, column, sign))
				args = append(args, value(s))
				// MongoDB compares strings with strings only.
				conditions = append(conditions, fmt.Sprintf(`json_type(%s, '$.%s') = 'text'`, metadata.DefaultColumn, k))
			}

		default:
			exact = false
		}
	}

	if len(conditions) == 0 {
		return "", nil, exact
	}

	return ` WHERE ` + strings.Join(conditions, ` AND `), args, exact
}

// doorstepOrderBy orders by one field in SQLite when the filter was pushed down exactly,
// so that a LIMIT may be applied there too (a newest-first page reads its page, not the
// collection). `->>` gives numbers (dates are stored as milliseconds) and strings as SQL
// values, which order as MongoDB orders them while a sorted field holds one type; NULL
// (missing) sorts first ascending and last descending, as in MongoDB. The handler sorts
// and limits again what comes back. limited says whether a LIMIT may follow.
func doorstepOrderBy(sort *types.Document, exact bool) (string, bool) {
	if sort == nil || sort.Len() == 0 {
		return "", true
	}

	k := sort.Keys()[0]
	if k == "$natural" {
		return prepareOrderByClause(sort), true
	}

	if sort.Len() != 1 || !exact || !plainField.MatchString(k) {
		return "", false
	}

	order := ""
	if must.NotFail(sort.Get(k)).(int64) < 0 {
		order = " DESC"
	}

	return fmt.Sprintf(` ORDER BY %s->>'%s'%s`, metadata.DefaultColumn, k, order), true
}

// doorstepCount counts in SQLite what the filter selects, when doorstepWhere pushes it
// down exactly (else counted is false and the handler counts the documents it reads).
func doorstepCount(ctx context.Context, db *fsql.DB, meta *metadata.Collection, filter *types.Document) (int64, bool, error) {
	where, args, exact := doorstepWhere(meta, filter)
	if !exact || meta.Capped() {
		return 0, false, nil
	}

	var n int64
	q := fmt.Sprintf(`SELECT COUNT(*) FROM %q`, meta.TableName) + where
	if err := db.QueryRowContext(ctx, q, args...).Scan(&n); err != nil {
		return 0, false, err
	}

	return n, true, nil
}
